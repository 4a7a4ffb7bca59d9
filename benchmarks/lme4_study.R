# lme4/emmeans's side of benchmarks/compare_study.py, on InstEval (y ~ service + (1|s) + (1|d) + (1|dept)):
# the ML fit with and without prior weights (w_i = 0.5 + (i mod 7)/4), and emmeans(m, ~ service) +
# pairs() of the REML fit with emmeans' default df (asymptotic above 3,000 rows) and with Satterthwaite's
# (lmerTest.limit raised; lmerTest's Hessian and Jacobian of the fit included). Kenward-Roger is not attempted: pbkrtest forms n x n matrices (73,421^2
# doubles, 43 GB). Each timed after a warm-up call of the same kind. Writes the JSON file given as the
# first argument.
#   Rscript benchmarks/lme4_study.R benchmarks/results/lme4_study.json

suppressPackageStartupMessages({
    library(lme4)
    library(lmerTest)
    library(emmeans)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))
args <- commandArgs(trailingOnly = TRUE)
out_path <- if (length(args)) args[1] else file.path("benchmarks", "results", "lme4_study.json")

raw <- read.csv(gzfile(file.path("sparselmm", "datasets", "insteval.csv.gz")), colClasses = "character")
d <- raw
d$y <- as.numeric(raw$y)
for (col in setdiff(names(raw), "y")) d[[col]] <- factor(raw[[col]])
d$w <- 0.5 + (seq_len(nrow(d)) %% 7) / 4
f <- y ~ service + (1 | s) + (1 | d) + (1 | dept)

timed <- function(expr) {
    t0 <- proc.time()[["elapsed"]]
    value <- force(expr)
    list(value = value, seconds = proc.time()[["elapsed"]] - t0)
}
invisible(lme4::lmer(y ~ service + (1 | dept), d, REML = FALSE))  # warm-up: lme4's first fit
unweighted <- timed(lme4::lmer(f, d, REML = FALSE))
weighted <- timed(lme4::lmer(f, d, REML = FALSE, weights = w))
reml <- lme4::lmer(f, d, REML = TRUE)

# emmeans' Satterthwaite df come from lmerTest, whose as_lmerModLmerTest (run by lmerTest::lmer after the
# fit) computes the deviance's Hessian and the Jacobian of vcov: timed here with the means, as ours is
emm_pairs <- function(m, ...) {
    e <- emmeans(m, ~ service, ...)
    list(emmeans = as.data.frame(summary(e)), pairs = as.data.frame(summary(pairs(e))))
}
invisible(suppressMessages(emm_pairs(reml)))  # warm-up
default_df <- timed(suppressMessages(emm_pairs(reml)))
satt <- timed(emm_pairs(lmerTest::as_lmerModLmerTest(reml), lmer.df = "satterthwaite", lmerTest.limit = 1e6))

sec <- function(x) x$seconds
json <- function(x) jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, pretty = TRUE)
res <- list(
    R = R.version.string, lme4 = format(packageVersion("lme4")), emmeans = format(packageVersion("emmeans")),
    lmerTest = format(packageVersion("lmerTest")),
    ml_fit = list(seconds = sec(unweighted), deviance = deviance(unweighted$value)),
    ml_fit_weighted = list(seconds = sec(weighted), deviance = deviance(weighted$value)),
    emmeans_pairs_default = list(seconds = sec(default_df), df = default_df$value$emmeans$df,
                                 emmean = default_df$value$emmeans$emmean),
    emmeans_pairs_satterthwaite = list(seconds = sec(satt), df = satt$value$emmeans$df,
                                       emmean = satt$value$emmeans$emmean, SE = satt$value$emmeans$SE,
                                       pairs_p = satt$value$pairs$p.value),
    kenward_roger = "not attempted: pbkrtest forms n x n matrices (73,421^2 doubles, 43 GB)"
)
writeLines(json(res), out_path)
cat("wrote", out_path, "\n")

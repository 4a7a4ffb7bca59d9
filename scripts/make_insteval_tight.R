# Tightly converged lme4 fits of InstEval, y ~ 1 + service + (1|s) + (1|d) + (1|dept), for the LRT and
# Wald tests of tests/test_inference.py. Writes tests/data/inference/insteval_reml.tight.json and
# tests/data/inference/insteval_ml.tight.json.
#
# Why: lme4's default optimizer (nloptwrap = NLopt's BOBYQA, xtol_abs = ftol_abs = 1e-8) stops up to
# ~3e-5 relative in theta and ~8e-7 in logLik short of the InstEval optimum (ML: 7.0e-7, so its LRTs
# are up to 1.4e-6 small), and where it stops depends on the deviance's last bits: the shared REML fit
# (insteval_reml.json: 68 evaluations, logLik -118866.917064551) is what reference BLAS gives (LD_PRELOAD
# of libblas.so.3/liblapack.so.3: 68, -118866.917064540), the fit behind insteval_reml.inference.json
# what OpenBLAS gives (76, -118866.917063760), theta_s 2.7e-5 relative apart.
# Here every model is fitted with minqa's BOBYQA to rhoend = 1e-12 (maxfun 1e5) from lme4's start.
# Check (`check` in the files): a second path, nloptwrap at xtol_abs = ftol_abs = 1e-14 from lme4's
# start (which itself still stops ~2e-8 short in logLik on the ML model), then BOBYQA restarted from
# its end with rhobeg = 1e-4; the two paths must end within 1e-8 in logLik (they do within 2e-9).
# The deviance itself jitters by ~3e-10 under 1e-12 relative changes of theta, so theta is determined
# only to ~1e-5 relative in the weakly curved dept direction, the logLik to ~1e-9, the Wald ends to
# ~6e-8 relative. Reruns are not byte-identical (the deviance's last bits vary between runs): they
# agree to ~2e-9 in logLik and ~4e-9 in the LRTs; with reference BLAS to 5e-10 in logLik, 4e-9 in the
# LRTs and 8e-8 relative in the Wald ends.
#
# Run from the repository root (2 cores shared: niced, ~1.5 minutes):
#   OPENBLAS_NUM_THREADS=1 nice -n 10 Rscript scripts/make_insteval_tight.R
# Made so with R 4.2.2 Patched (2022-11-10 r83330), lme4 1.1-31, Matrix 1.5-3, minqa 1.2.5,
# nloptr 2.0.3, OpenBLAS 0.3.21 (pthread); `versions` in the files records what was used.
#
# Data and coding as in the shared references: sparselmm/datasets/insteval.csv.gz (byte-identical to
# the shared insteval.csv), every column but y a factor re-created with factor() in the C locale
# (string order), treatment contrasts.
#
# Fields: `fit` (theta, sigma, beta, beta_se = sqrt(diag(vcov)), objective = REMLcrit or deviance,
# logLik, feval, optimizer message), `wald` = confint(m, method = "Wald") at `level`, `ranova`
# (lmerTest's layout: each random term dropped, refitted with the same criterion; logLik, npar, LRT,
# Df, p), ML only: `drop_fixed` (anova(m without service, m): Chisq, Df, p, both logLiks). Every
# refit uses the same tight control.

suppressPackageStartupMessages({
    library(lme4)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))
options(contrasts = c("contr.treatment", "contr.poly"))

OUT <- file.path("tests", "data", "inference")
stopifnot(dir.exists(OUT))
LEVEL <- 0.95
FORMULA <- "y ~ 1 + service + (1|s) + (1|d) + (1|dept)"
TIGHT <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5),
                     calc.derivs = FALSE)
CHECK <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-14, xtol_rel = 0, ftol_rel = 0,
                                    maxeval = 1e5),
                     calc.derivs = FALSE)
RESTART <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 1e-4, rhoend = 1e-12, maxfun = 1e5),
                       calc.derivs = FALSE)

pkg_version <- function(p) packageDescription(p)$Version
versions <- list(R = R.version.string, lme4 = pkg_version("lme4"), Matrix = pkg_version("Matrix"),
                 minqa = pkg_version("minqa"), nloptr = pkg_version("nloptr"),
                 BLAS = sessionInfo()$BLAS)

source(file.path("scripts", "reference_helpers.R"))

# ---------------------------------------------------------------------------------------------

raw <- read.csv(gzfile(file.path("sparselmm", "datasets", "insteval.csv.gz")),
                colClasses = "character")
data <- raw
data$y <- as.numeric(raw$y)
for (col in setdiff(names(raw), "y")) data[[col]] <- factor(raw[[col]])
stopifnot(nrow(data) == 73421L)

fit <- function(f, reml, control, start = NULL) {
    environment(f) <- environment()
    eval(bquote(lme4::lmer(.(f), data = data, REML = .(reml), control = control, start = .(start))))
}

# A tight fit plus its check along a second path; stops if the two end beyond 1e-8 apart in logLik.
tight_fit <- function(f, reml) {
    m <- fit(f, reml, TIGHT)
    c1 <- fit(f, reml, CHECK)
    c2 <- fit(f, reml, RESTART, start = getME(c1, "theta"))
    ll <- function(x) as.numeric(logLik(x))
    dll <- abs(ll(m) - ll(c2))
    dth <- max(abs(getME(c2, "theta") / getME(m, "theta") - 1))
    cat(sprintf("%-50s REML=%-5s logLik %.10f (feval %d); check %.10f (nloptwrap %.10f, feval %d + %d)\n",
                paste(deparse(f, width.cutoff = 500L), collapse = ""), reml, ll(m), m@optinfo$feval,
                ll(c2), ll(c1), c1@optinfo$feval, c2@optinfo$feval))
    stopifnot(dll < 1e-8)
    list(model = m,
         check = list(path = paste("nloptwrap (xtol_abs = ftol_abs = 1e-14), then bobyqa from its end",
                                   "(rhobeg = 1e-4, rhoend = 1e-12)"),
                      logLik_nloptwrap = ll(c1), logLik = ll(c2), theta = as.list(getME(c2, "theta")),
                      abs_diff_logLik = dll, max_rel_diff_theta = dth))
}

describe <- function(m) {
    list(theta = as.list(getME(m, "theta")),
         sigma = sigma(m),
         beta = as.list(fixef(m)),
         beta_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
         objective = if (isREML(m)) REMLcrit(m) else deviance(m),
         logLik = as.numeric(logLik(m)),
         npar = as.integer(attr(logLik(m), "df")),
         feval = m@optinfo$feval,
         optimizer_message = m@optinfo$message)
}

lrt_row <- function(m0, m1) {
    chisq <- 2 * (as.numeric(logLik(m1)) - as.numeric(logLik(m0)))
    df <- attr(logLik(m1), "df") - attr(logLik(m0), "df")
    list(logLik = as.numeric(logLik(m0)), npar = as.integer(attr(logLik(m0), "df")),
         LRT = chisq, Df = as.numeric(df), p = pchisq(chisq, df, lower.tail = FALSE))
}

for (reml in c(TRUE, FALSE)) {
    kind <- if (reml) "reml" else "ml"
    f <- as.formula(FORMULA)
    full <- tight_fit(f, reml)
    m <- full$model
    ci <- confint(m, method = "Wald", level = LEVEL)[names(fixef(m)), , drop = FALSE]
    wald <- list()
    for (r in rownames(ci)) wald[[r]] <- list(lower = ci[r, 1], upper = ci[r, 2])

    # lmerTest::ranova's rows: "<none>", then each random term dropped
    ranova <- list(`<none>` = list(logLik = as.numeric(logLik(m)),
                                   npar = as.integer(attr(logLik(m), "df")),
                                   LRT = NA, Df = NA, p = NA))
    checks <- list(full = full$check)
    for (term in c("(1 | s)", "(1 | d)", "(1 | dept)")) {
        reduced <- update(f, as.formula(paste(". ~ . -", term)))
        r <- tight_fit(reduced, reml)
        ranova[[term]] <- lrt_row(r$model, m)
        checks[[paste("ranova", term)]] <- r$check
    }

    res <- list(formula = FORMULA, reml = reml, dataset = "sparselmm/datasets/insteval.csv.gz",
                optimizer = "bobyqa (minqa), rhoend = 1e-12, maxfun = 1e5",
                level = LEVEL, fit = describe(m), wald = wald, ranova = ranova)
    if (!reml) {
        reduced <- update(f, . ~ . - service)
        r <- tight_fit(reduced, reml)
        a <- anova(r$model, m)
        row <- lrt_row(r$model, m)
        stopifnot(abs(a[2, "Chisq"] - row$LRT) < 1e-9)
        res$drop_fixed <- list(service = list(
            Chisq = a[2, "Chisq"], Df = as.numeric(a[2, "Df"]), p = a[2, "Pr(>Chisq)"],
            logLik_reduced = as.numeric(logLik(r$model)), logLik_full = as.numeric(logLik(m)),
            formula_reduced = paste(deparse(reduced, width.cutoff = 500L), collapse = "")))
        checks[["drop_fixed service"]] <- r$check
    }
    res$check <- checks
    res$versions <- versions
    path <- file.path(OUT, sprintf("insteval_%s.tight.json", kind))
    writeLines(to_json(res), path)
    cat("wrote", path, "\n")
}

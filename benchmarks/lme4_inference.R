# How long lme4's inference takes on InstEval (73,421 rows; s: 2,972, d: 1,128, dept: 14 levels):
#   (i)   the REML fit, then summary(as_lmerModLmerTest(m)) (Satterthwaite coefficient table)
#   (ii)  the ML fit, then confint(m_ml, method = "profile"), stopped after 30 minutes
#   (iii) bootMer(m_reml, ..., nsim = 20), extrapolated to 1,000 replicates
# Run from the repository root (it takes up to ~40 minutes):
#   nice -n 19 Rscript benchmarks/lme4_inference.R
# Writes benchmarks/results/lme4_inference.json (rewritten after each stage, so a stopped run
# leaves the stages it finished). Timings are elapsed (wall-clock) seconds on whatever machine runs
# it; they are indicative only.

suppressPackageStartupMessages({
    library(lme4)
    library(lmerTest)
})
OUT <- file.path("benchmarks", "results", "lme4_inference.json")
PROFILE_LIMIT <- 1800  # seconds
NSIM <- 20L
NSIM_TARGET <- 1000L
FORMULA <- y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)

data(InstEval, package = "lme4")

elapsed <- function(expr) {
    t0 <- proc.time()[["elapsed"]]
    value <- expr
    list(value = value, seconds = round(proc.time()[["elapsed"]] - t0, 3))
}

cpu_model <- tryCatch({
    line <- grep("^model name", readLines("/proc/cpuinfo"), value = TRUE)[1]
    trimws(sub("^[^:]*:", "", line))
}, error = function(e) NA_character_, warning = function(w) NA_character_)

result <- list(
    data = "lme4::InstEval (data(InstEval, package = \"lme4\"), lme4's own factor levels)",
    n = nrow(InstEval),
    formula = paste(deparse(FORMULA), collapse = ""),
    started = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"),
    machine = list(cpu = cpu_model, cores = parallel::detectCores(),
                   note = "run under nice -n 19 on a shared machine; elapsed (wall-clock) seconds, indicative only"),
    versions = list(R = R.version.string,
                    lme4 = packageDescription("lme4")$Version,
                    lmerTest = packageDescription("lmerTest")$Version,
                    Matrix = packageDescription("Matrix")$Version,
                    nloptr = packageDescription("nloptr")$Version)
)
save <- function() {
    jsonlite::write_json(result, OUT, auto_unbox = TRUE, pretty = TRUE, digits = NA,
                         null = "null", na = "null")
    cat("wrote", OUT, "\n")
}

# Warm-up: the first lmer call of a session loads code lazily.
invisible(lmer(Reaction ~ Days + (Days | Subject), sleepstudy))

# (i) REML fit, then the Satterthwaite coefficient table ------------------------------------------
fit <- elapsed(lme4::lmer(FORMULA, data = InstEval, REML = TRUE))
m_reml <- fit$value
conv <- elapsed(as_lmerModLmerTest(m_reml))  # lmerTest's Hessian of the variance parameters
summ <- elapsed(summary(conv$value, ddf = "Satterthwaite"))
cf <- coef(summ$value)
result$reml_fit <- list(seconds = fit$seconds, REMLcrit = REMLcrit(m_reml),
                        feval = m_reml@optinfo$feval,
                        conv_messages = I(as.character(m_reml@optinfo$conv$lme4$messages)))
result$satterthwaite_summary <- list(
    seconds = round(conv$seconds + summ$seconds, 3),
    seconds_as_lmerModLmerTest = conv$seconds,
    seconds_summary = summ$seconds,
    what = "summary(as_lmerModLmerTest(m_reml)) after the fit: the conversion (which computes the asymptotic covariance of the variance parameters) plus summary()",
    coefficients = lapply(setNames(rownames(cf), rownames(cf)), function(r) {
        list(estimate = cf[r, "Estimate"], se = cf[r, "Std. Error"], df = cf[r, "df"],
             t = cf[r, "t value"], p = cf[r, "Pr(>|t|)"])
    })
)
save()

# (ii) ML fit, then profile confidence intervals with a 30-minute limit ---------------------------
fit <- elapsed(lme4::lmer(FORMULA, data = InstEval, REML = FALSE))
m_ml <- fit$value
result$ml_fit <- list(seconds = fit$seconds, deviance = deviance(m_ml),
                      feval = m_ml@optinfo$feval,
                      conv_messages = I(as.character(m_ml@optinfo$conv$lme4$messages)))
save()

# setTimeLimit() alone cannot stop confint(): profile() catches the "reached elapsed time limit"
# errors of its refits and goes on with NA values ("NAs detected in profiling"), so a limit of 10 s
# still ran for minutes and returned NA intervals. The profile therefore runs in a forked child
# (with setTimeLimit() inside tryCatch as a first stop) that the parent kills at the limit; a
# result counts only if the child returned it within the limit.
profile_child <- function() {
    warns <- character()
    t0 <- proc.time()[["elapsed"]]
    out <- tryCatch(withCallingHandlers({
        setTimeLimit(elapsed = PROFILE_LIMIT, transient = TRUE)
        ci <- suppressMessages(confint(m_ml, method = "profile"))
        setTimeLimit()
        list(status = "ok",
             intervals = lapply(setNames(rownames(ci), rownames(ci)),
                                function(r) list(lower = ci[r, 1], upper = ci[r, 2])))
    }, warning = function(w) {
        warns <<- c(warns, conditionMessage(w))
        invokeRestart("muffleWarning")
    }), error = function(e) {
        setTimeLimit()
        list(status = "error", message = conditionMessage(e))
    })
    out$seconds_in_child <- round(proc.time()[["elapsed"]] - t0, 3)
    counts <- table(warns)
    out$warnings <- if (length(counts)) as.list(c(counts)) else setNames(list(), character())
    out
}

t0 <- proc.time()[["elapsed"]]
job <- parallel::mcparallel(profile_child())
collected <- NULL
while (is.null(collected) && proc.time()[["elapsed"]] - t0 < PROFILE_LIMIT) {
    collected <- parallel::mccollect(job, wait = FALSE, timeout = 1)
}
spent <- round(proc.time()[["elapsed"]] - t0, 3)
if (is.null(collected)) {
    tools::pskill(job$pid, tools::SIGKILL)
    invisible(suppressWarnings(parallel::mccollect(job, wait = TRUE)))
    profile_result <- list(status = "did not finish in 30 min", seconds = spent)
} else {
    profile_result <- collected[[1]]
    if (inherits(profile_result, "try-error")) {
        profile_result <- list(status = "error", message = as.character(profile_result))
    }
    profile_result$seconds <- spent
    if (identical(profile_result$status, "ok") && profile_result$seconds_in_child >= PROFILE_LIMIT) {
        profile_result$status <- "did not finish in 30 min"  # the time limit fired inside profile()
        profile_result$intervals <- NULL
    }
}
result$profile_confint <- c(list(limit_seconds = PROFILE_LIMIT,
                                 call = "confint(m_ml, method = \"profile\")"),
                            profile_result)
save()

# (iii) parametric bootstrap, 20 replicates, extrapolated to 1,000 --------------------------------
boot_fun <- function(x) c(fixef(x), getME(x, "theta"), sigma(x))
boot <- elapsed(suppressMessages(bootMer(m_reml, boot_fun, nsim = NSIM, seed = 1)))
failed <- sum(!stats::complete.cases(boot$value$t))
result$bootmer <- list(
    call = "bootMer(m_reml, function(x) c(fixef(x), getME(x, \"theta\"), sigma(x)), nsim = 20, seed = 1)",
    nsim = NSIM,
    seconds = boot$seconds,
    seconds_per_replicate = round(boot$seconds / NSIM, 3),
    failed_replicates = failed,
    extrapolated_nsim = NSIM_TARGET,
    extrapolated_seconds = round(boot$seconds / NSIM * NSIM_TARGET, 1),
    extrapolation_note = "an extrapolation, not measured: the 20-replicate time times 50 (bootMer refits the REML model once per replicate, serially)"
)
result$finished <- format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z")
save()

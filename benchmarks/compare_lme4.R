# One lme4 fit for benchmarks/compare.py: time lmer(FORMULA, data, REML = REML)
# and write the result as one line of JSON (objective: REMLcrit, or the ML deviance).
#
#   Rscript benchmarks/compare_lme4.R DATA.csv FORMULA FACTORS OUT.json [REML: TRUE | FALSE]
#
# FACTORS: comma-separated columns read as factors (all others numeric).
# OUT.json.started is created just before the timed fit, so that the caller's
# timeout covers the fit only (not R's start-up or reading the CSV).

args <- commandArgs(trailingOnly = TRUE)
stopifnot(length(args) %in% 4:5)
out <- args[4]
reml <- if (length(args) == 5) as.logical(args[5]) else TRUE
suppressMessages(library(lme4))

factors <- strsplit(args[3], ",", fixed = TRUE)[[1]]
header <- names(read.csv(args[1], nrows = 1))
classes <- ifelse(header %in% factors, "factor", "numeric")
names(classes) <- header
data <- read.csv(args[1], colClasses = classes)
formula <- as.formula(args[2])

# Warm-up: the first lmer call of a session loads code lazily.
invisible(suppressMessages(lmer(Reaction ~ Days + (Days | Subject), sleepstudy)))

clean <- function(s) gsub("[\"\\\\\n]", " ", paste(s, collapse = "; "))
version <- sprintf("R %s.%s, lme4 %s", R.version$major, R.version$minor, packageVersion("lme4"))

file.create(paste0(out, ".started"))
line <- tryCatch({
    t0 <- proc.time()[["elapsed"]]
    m <- suppressMessages(lmer(formula, data, REML = reml))
    elapsed <- proc.time()[["elapsed"]] - t0
    msgs <- m@optinfo$conv$lme4$messages
    sprintf(paste0('{"status": "ok", "time": %.6f, "objective": %.17g, "converged": %s, ',
                   '"message": "%s", "version": "%s"}'),
            elapsed, if (reml) REMLcrit(m) else deviance(m), if (length(msgs)) "false" else "true", clean(msgs), version)
}, error = function(e) {
    msg <- conditionMessage(e)
    status <- if (grepl("cannot allocate|memory", msg)) "oom" else "error"
    sprintf('{"status": "%s", "message": "%s", "version": "%s"}', status, clean(msg), version)
})
writeLines(line, out)

# Reference values from R (lme4, lmerTest, pbkrtest) for fixed-effect inference on models with
# multi-degree-of-freedom fixed terms and interactions. Writes into tests/data/:
#
#   machines.csv   machines_reml.inference.json   machines_ml.inference.json
#   cake.csv       cake_reml.inference.json       cake_ml.inference.json
#   sleepphase.csv sleepphase_reml.inference.json sleepphase_ml.inference.json
#
# Run from the repository root:   Rscript scripts/make_inference_references.R
# Needs R with lme4, lmerTest, pbkrtest, nlme (Debian: r-cran-lme4 r-cran-lmertest r-cran-pbkrtest).
# tests/data/README_inference.md describes the files.

suppressPackageStartupMessages({
    library(lme4)
    library(lmerTest)
    library(pbkrtest)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))  # factor levels in byte order, as the other references
options(contrasts = c("contr.treatment", "contr.poly"))

OUT <- file.path("tests", "data")
LEVEL <- 0.95
stopifnot(dir.exists(OUT))

pkg_version <- function(p) packageDescription(p)$Version  # as R prints it, e.g. "1.1-31"
versions <- list(
    lme4 = pkg_version("lme4"),
    lmerTest = pkg_version("lmerTest"),
    pbkrtest = pkg_version("pbkrtest"),
    Matrix = pkg_version("Matrix"),
    nlme = pkg_version("nlme"),
    R = R.version.string
)

# ---------------------------------------------------------------------------------------------
source(file.path("scripts", "reference_helpers.R"))

# ---------------------------------------------------------------------------------------------
# Helpers turning R tables into named lists keyed by the row names R prints.

as_int_if_integral <- function(v) if (!is.na(v) && v == round(v)) as.integer(round(v)) else v

table_rows <- function(tab, cols, int_cols = character()) {
    out <- list()
    for (r in rownames(tab)) {
        row <- list()
        for (key in names(cols)) {
            v <- unname(tab[r, cols[[key]]])
            if (key %in% int_cols) v <- as_int_if_integral(v)
            row[[key]] <- v
        }
        out[[r]] <- row
    }
    out
}

coef_table <- function(s) table_rows(coef(s), c(estimate = "Estimate", se = "Std. Error",
                                                df = "df", t = "t value", p = "Pr(>|t|)"))

anova_cols <- c(sum_sq = "Sum Sq", mean_sq = "Mean Sq", num_df = "NumDF", den_df = "DenDF",
                F = "F value", p = "Pr(>F)")
anova_table <- function(a) table_rows(a, anova_cols, int_cols = "num_df")

interval_table <- function(ci, rows = rownames(ci)) {
    ci <- ci[rows, , drop = FALSE]
    colnames(ci) <- c("lower", "upper")
    table_rows(ci, c(lower = "lower", upper = "upper"))
}

matrix_rows <- function(L) lapply(seq_len(nrow(L)), function(i) I(unname(L[i, ]) + 0))  # no -0

# Evaluate expr, collecting warnings and messages as "<step>: <text>" into the global `issues`.
issues <- character()
capture <- function(step, expr) {
    withCallingHandlers(expr,
        warning = function(w) {
            issues <<- c(issues, paste0(step, ": warning: ", conditionMessage(w)))
            invokeRestart("muffleWarning")
        },
        message = function(m) {
            text <- trimws(conditionMessage(m))
            if (!startsWith(text, "Computing profile confidence intervals")) {
                issues <<- c(issues, paste0(step, ": message: ", text))
            }
            invokeRestart("muffleMessage")
        })
}

# ---------------------------------------------------------------------------------------------
# Data: written to CSV (factor columns as strings), read back, factors re-created with factor()
# (write_and_read, machines_data: scripts/reference_helpers.R).

cake_data <- function() {
    d <- lme4::cake
    d <- data.frame(angle = as.numeric(d$angle), recipe = as.character(d$recipe),
                    temp = as.numeric(d$temp), replicate = as.character(d$replicate))
    write_and_read(d, "cake", c("recipe", "replicate"))
}

sleepphase_data <- function() {
    d <- lme4::sleepstudy
    phase <- ifelse(d$Days <= 2, "a", ifelse(d$Days <= 5, "b", "c"))
    d <- data.frame(Reaction = d$Reaction, Days = as.numeric(d$Days), phase = phase,
                    Subject = as.character(d$Subject))
    write_and_read(d, "sleepphase", c("phase", "Subject"))
}

# ---------------------------------------------------------------------------------------------
# One model, one fit (REML or ML) -> one inference JSON.

reference <- function(case, reml) {
    issues <<- character()
    data <- case$data
    formula <- as.formula(case$formula)
    # The formula and REML flag are put into the call itself and the formula's environment
    # holds `data`, so that lmerTest (and update()) can re-evaluate the call.
    fit <- function(f, REML = reml) {
        environment(f) <- environment()
        eval(bquote(lme4::lmer(.(f), data = data, REML = .(REML),
                               control = lmerControl(calc.derivs = TRUE))))
    }
    m <- capture("fit", fit(formula))
    mt <- as_lmerModLmerTest(m)
    beta <- fixef(m)
    X <- getME(m, "X")
    stopifnot(identical(colnames(X), names(beta)))

    res <- list(
        formula = case$formula,
        reml = reml,
        dataset = paste0(case$prefix, ".csv"),
        source = case$source,
        columns = case$columns,
        fixed_factor_levels = lapply(case$fixed_factors, function(f) I(levels(data[[f]]))),
        n = nrow(data),
        level = LEVEL,
        beta = as.list(beta),
        theta = as.list(getME(m, "theta")),
        sigma = sigma(m),
        objective_kind = if (reml) "REMLcrit(m)" else "deviance(m)",
        objective = if (reml) REMLcrit(m) else deviance(m),
        loglik = as.numeric(logLik(m)),
        singular = isSingular(m),
        conv_messages = I(as.character(m@optinfo$conv$lme4$messages))
    )

    ci <- capture("wald", confint(m, method = "Wald", level = LEVEL))
    res$wald <- interval_table(ci, names(beta))

    notes <- case$notes
    prof <- tryCatch(capture("profile", confint(m, method = "profile", level = LEVEL,
                                                oldNames = FALSE)),
                     error = function(e) e)
    if (inherits(prof, "error")) {
        notes <- c(notes, paste("confint(m, method = \"profile\") failed:", conditionMessage(prof)))
    } else {
        res$profile <- interval_table(prof)
    }

    if (reml) {
        res$satterthwaite <- coef_table(capture("satterthwaite",
                                                summary(mt, ddf = "Satterthwaite")))
        res$kenward_roger <- coef_table(capture("kenward_roger",
                                                summary(mt, ddf = "Kenward-Roger")))
        a3 <- capture("anova_satterthwaite", anova(mt, type = 3, ddf = "Satterthwaite"))
        res$anova_satterthwaite <- anova_table(a3)
        res$anova_kr <- anova_table(capture("anova_kr",
                                            anova(mt, type = 3, ddf = "Kenward-Roger")))
        res$anova_type1_satterthwaite <- anova_table(capture("anova_type1",
                                                             anova(mt, type = 1,
                                                                   ddf = "Satterthwaite")))
        hyp <- attr(a3, "hypotheses")
        res$anova_type3_hypotheses <- lapply(hyp, function(L) {
            list(rows = I(rownames(L)), L = matrix_rows(L))
        })

        L <- case$contrast$L
        stopifnot(ncol(L) == length(beta))
        colnames(L) <- names(beta)
        cs <- capture("contrast", contest(mt, L, joint = TRUE, ddf = "Satterthwaite"))
        ck <- capture("contrast", contest(mt, L, joint = TRUE, ddf = "Kenward-Roger"))
        rownames(cs) <- rownames(ck) <- "joint"
        res$contrast <- list(
            description = I(case$contrast$description),
            columns = I(names(beta)),
            L = matrix_rows(L),
            rhs = I(rep(0, nrow(L))),
            estimate = I(unname(drop(L %*% beta))),
            satterthwaite = anova_table(cs)[["joint"]],
            kenward_roger = anova_table(ck)[["joint"]]
        )
    }

    rt <- capture("ranova", ranova(mt))
    res$ranova <- table_rows(rt, c(logLik = "logLik", npar = "npar", LRT = "LRT", Df = "Df",
                                   p = "Pr(>Chisq)"), int_cols = "npar")

    if (!reml) {
        drop <- list()
        d1 <- capture("drop1", drop1(m, test = "Chisq"))
        for (term in drop.scope(terms(m))) {
            reduced <- update(formula, as.formula(paste(". ~ . -", term)))
            m0 <- capture("drop_fixed", fit(reduced, REML = FALSE))
            a <- capture("drop_fixed", anova(m0, m))
            stopifnot(isTRUE(all.equal(a[2, "Chisq"], d1[term, "LRT"], tolerance = 1e-6)))
            drop[[term]] <- list(Chisq = a[2, "Chisq"], Df = as.numeric(a[2, "Df"]),
                                 p = a[2, "Pr(>Chisq)"],
                                 logLik_reduced = as.numeric(logLik(m0)),
                                 logLik_full = as.numeric(logLik(m)),
                                 formula_reduced = paste(deparse(reduced, width.cutoff = 500L),
                                                         collapse = ""))
        }
        res$drop_fixed <- drop
    }

    res$notes <- I(as.character(notes))
    res$warnings <- I(as.character(issues))
    res$versions <- versions
    write_json(res, file.path(OUT, sprintf("%s_%s.inference.json", case$prefix,
                                           if (reml) "reml" else "ml")))
    invisible(res)
}

# ---------------------------------------------------------------------------------------------
# The models.

cases <- list(
    list(
        prefix = "machines",
        data = machines_data(),
        source = "nlme::Machines (R package nlme)",
        formula = "score ~ Machine + (1|Worker) + (1|Worker:Machine)",
        columns = list(score = "numeric", Machine = "factor", Worker = "factor"),
        fixed_factors = list(Machine = "Machine"),
        notes = c("Data: nlme::Machines (lme4 has no Machines data set).",
                  "Worker is an ordered factor in nlme; it was written as strings and re-created with factor()."),
        contrast = list(
            # columns: (Intercept), MachineB, MachineC
            L = rbind(c(0, 1, -1),
                      c(1, 0.5, 0.5)),
            description = c("MachineB - MachineC (machine B vs machine C)",
                            "(Intercept) + (MachineB + MachineC)/2 (mean of machines B and C)")
        )
    ),
    list(
        prefix = "cake",
        data = cake_data(),
        source = "lme4::cake (R package lme4)",
        formula = "angle ~ recipe * temp + (1|recipe:replicate)",
        columns = list(angle = "numeric", recipe = "factor", temp = "numeric",
                       replicate = "factor"),
        fixed_factors = list(recipe = "recipe"),
        notes = c("temp is the numeric column of lme4::cake (175, 185, ..., 225); the ordered factor 'temperature' is not used.",
                  "replicate levels look numeric ('1'..'15') and are sorted as strings; the grouping factor is recipe:replicate (45 levels).",
                  "Type-3 anova with a numeric covariate in an interaction: lmerTest tests recipe at temp = 0 and temp averaged over the recipes; anova_type3_hypotheses holds the contrast rows lmerTest used.",
                  "lmerTest rounds its type-3 contrast rows with zapsmall() (7 significant digits), so the temp row has 0.3333333, not 1/3, for the interaction columns; the stored type-3 results are for these rounded rows."),
        contrast = list(
            # columns: (Intercept), recipeB, recipeC, temp, recipeB:temp, recipeC:temp
            L = rbind(c(0, 0, 0, 0, 1, -1),
                      c(0, 1, 0, 0, 200, 0)),
            description = c("recipeB:temp - recipeC:temp (temp slope of recipe B vs recipe C)",
                            "recipeB + 200 * recipeB:temp (recipe B vs recipe A at temp = 200)")
        )
    ),
    list(
        prefix = "sleepphase",
        data = sleepphase_data(),
        source = "lme4::sleepstudy (R package lme4), with a derived column phase",
        formula = "Reaction ~ Days + phase + (1|Subject)",
        columns = list(Reaction = "numeric", Days = "numeric", phase = "factor",
                       Subject = "factor"),
        fixed_factors = list(phase = "phase"),
        notes = c("phase = 'a' for Days 0-2, 'b' for Days 3-5, 'c' for Days 6-9 (a within-subject factor).",
                  "Subject levels look numeric ('308', ...); read them as strings."),
        contrast = list(
            # columns: (Intercept), Days, phaseb, phasec
            L = rbind(c(0, 0, -1, 1),
                      c(0, 3, 1, 0)),
            description = c("phasec - phaseb (phase c vs phase b at equal Days)",
                            "3 * Days + phaseb (expected change from day 0 to day 3)")
        )
    )
)

for (case in cases) {
    for (reml in c(TRUE, FALSE)) reference(case, reml)
}

# References from R for what a study reports after the fit: prior weights, offsets, estimated
# marginal means and their contrasts (emmeans), and lmerTest's ranova with its reduction of terms.
# Writes tests/data/study/: the data sets (<name>.csv) and one JSON file per reference.
#
# Run from the repository root (2 cores: ~10 minutes, most of it InstEval):
#   OPENBLAS_NUM_THREADS=1 nice -n 10 Rscript scripts/make_study_references.R
# Needs R with lme4, lmerTest, pbkrtest, emmeans, mlmRev, nlme (Debian: r-cran-lme4 r-cran-lmertest
# r-cran-pbkrtest r-cran-emmeans r-cran-mlmrev). tests/data/study/README.md describes the files.
#
# Every lme4 fit here is converged tightly: minqa's BOBYQA to rhoend = 1e-12 (lme4's default stops
# ~1e-6 short in the criterion), refits (ranova, the REML refit of pbkrtest) with the same control.
#
# Kenward-Roger with prior weights. pbkrtest (0.5.2) builds V = sum_i gamma_i G_i + sigma^2 I: its
# residual covariance ignores the prior weights (it should be sigma^2 W^-1), while its Phi = vcov(m)
# is the weighted fit's, so its adjustment of a weighted fit is not the Kenward-Roger adjustment of
# that model. `kenward_roger` of a weighted fit below is pbkrtest's own algorithm
# (pbkrtest:::vcovAdj_internal, Lb_ddf) on the covariance structure with G_residual = W^-1;
# `kenward_roger_pbkrtest` is what pbkrtest (and so emmeans) prints, for the record.

suppressPackageStartupMessages({
    library(lme4)
    library(lmerTest)
    library(pbkrtest)
    library(emmeans)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))  # factor levels in byte order, as the other references
options(contrasts = c("contr.treatment", "contr.poly"))
emm_options(pbkrtest.limit = 1e5, lmerTest.limit = 1e6)  # no switch to asymptotic df by size

OUT <- file.path("tests", "data", "study")
dir.create(OUT, showWarnings = FALSE)
source(file.path("scripts", "reference_helpers.R"))
# SECTIONS=fits,emmeans,ranova,insteval,boundary,readme (default: all) remakes only those files
SECTIONS <- strsplit(Sys.getenv("SECTIONS", "all"), ",")[[1]]
run <- function(section) any(c("all", section) %in% SECTIONS)
TIGHT <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
pkg_version <- function(p) packageDescription(p)$Version
versions <- list(R = R.version.string, lme4 = pkg_version("lme4"), lmerTest = pkg_version("lmerTest"),
                 pbkrtest = pkg_version("pbkrtest"), emmeans = pkg_version("emmeans"),
                 Matrix = pkg_version("Matrix"), mlmRev = pkg_version("mlmRev"))

# --- data: CSV (write_and_read, scripts/reference_helpers.R), numbers to 6 decimals ------------------
set.seed(20261204)
r6 <- function(x) as.numeric(sprintf("%.6f", x))  # the double nearest its 6-decimal text

sleepstudy_data <- function() {
    d <- lme4::sleepstudy
    n <- nrow(d)
    d <- data.frame(Reaction = d$Reaction, Days = as.numeric(d$Days), Subject = as.character(d$Subject),
                    w = r6(runif(n, 0.5, 2)), o = r6(rnorm(n, 20, 5)),
                    g3 = sample(c("ctl", "highdose", "lowdose"), n, TRUE))
    write_and_read(d, "sleepstudy_w", c("Subject", "g3"))
}

penicillin_data <- function() {
    d <- lme4::Penicillin
    n <- nrow(d)
    d <- data.frame(diameter = d$diameter, plate = as.character(d$plate), sample = as.character(d$sample),
                    w = r6(runif(n, 0.25, 4)), o = r6(rnorm(n, 0, 0.5)))
    write_and_read(d, "penicillin_w", c("plate", "sample"))
}

# ScotsSec aggregated to cells of primary school x secondary school x sex: the mean attainment of each
# cell, weighted by its pupils (a study that only has the cell means)
scotssec_data <- function() {
    s <- mlmRev::ScotsSec
    key <- interaction(s$primary, s$second, s$sex, drop = TRUE)
    cell <- function(x, f) as.vector(tapply(x, key, f))
    first <- function(x) x[1]
    d <- data.frame(attain = r6(cell(s$attain, mean)), verbal = r6(cell(s$verbal, mean)),
                    n = as.numeric(cell(s$attain, length)),
                    primary = cell(as.character(s$primary), first), second = cell(as.character(s$second), first),
                    sex = cell(as.character(s$sex), first))
    write_and_read(d, "scotssec_cells", c("primary", "second", "sex"))
}

exam_data <- function() {
    e <- mlmRev::Exam
    n <- nrow(e)
    d <- data.frame(normexam = r6(e$normexam), standLRT = r6(e$standLRT), sex = as.character(e$sex),
                    vr = as.character(e$vr), school = as.character(e$school),
                    w = r6(runif(n, 0.5, 2)))
    write_and_read(d, "exam_w", c("sex", "vr", "school"))
}

cake_data <- function() {
    d <- lme4::cake
    d <- data.frame(angle = as.numeric(d$angle), recipe = as.character(d$recipe),
                    temperature = paste0("t", as.character(d$temperature)), replicate = as.character(d$replicate))
    write_and_read(d, "cake_f", c("recipe", "temperature", "replicate"))
}

oats_data <- function() {
    d <- nlme::Oats
    d <- data.frame(yield = as.numeric(d$yield), nitro = as.numeric(d$nitro),
                    Variety = as.character(d$Variety), Block = as.character(d$Block))
    write_and_read(d, "oats", c("Variety", "Block"))
}

insteval_data <- function() {
    raw <- read.csv(gzfile(file.path("sparselmm", "datasets", "insteval.csv.gz")), colClasses = "character")
    d <- raw
    d$y <- as.numeric(raw$y)
    for (col in setdiff(names(raw), "y")) d[[col]] <- factor(raw[[col]])
    d
}

# --- fits ---------------------------------------------------------------------------------------------
fit <- function(formula, data, reml, weights = NULL, offset = NULL) {
    f <- as.formula(formula)
    environment(f) <- environment()
    eval(bquote(lme4::lmer(.(f), data = data, REML = .(reml), control = TIGHT,
                           weights = .(if (is.null(weights)) NULL else as.name(weights)),
                           offset = .(if (is.null(offset)) NULL else as.name(offset)))))
}

rows <- function(tab, cols) {
    out <- list()
    for (r in rownames(tab)) out[[r]] <- lapply(setNames(cols, names(cols)), function(c) unname(tab[r, c]))
    out
}

coef_rows <- function(s) rows(coef(s), c(estimate = "Estimate", se = "Std. Error", df = "df", t = "t value",
                                       p = "Pr(>|t|)"))

# pbkrtest's Kenward-Roger with the residual covariance sigma^2 W^-1 (see the header)
vcov_adj_weighted <- function(m) {
    SG <- pbkrtest:::.get_SigmaG(m)
    G <- SG$G
    G[[length(G)]] <- Diagonal(x = 1 / weights(m))
    vc <- VarCorr(m)
    gam <- unlist(lapply(vc, function(L) L[lower.tri(L, diag = TRUE)]))
    gam <- c(gam, sigma(m)^2)
    Sigma <- Reduce(`+`, Map(`*`, gam, G))
    pbkrtest:::vcovAdj_internal(vcov(m), list(Sigma = Sigma, G = G, n.ggamma = length(gam)), getME(m, "X"))
}

kr_rows <- function(m, Vadj) {
    beta <- fixef(m)
    V0 <- as.matrix(vcov(m))
    out <- list()
    for (j in seq_along(beta)) {
        L <- matrix(0, 1, length(beta))
        L[j] <- 1
        se <- sqrt(as.numeric(L %*% as.matrix(Vadj) %*% t(L)))
        df <- pbkrtest::Lb_ddf(L, V0, Vadj)
        t <- beta[[j]] / se
        out[[names(beta)[j]]] <- list(estimate = beta[[j]], se = se, df = df, t = t, p = 2 * pt(-abs(t), df))
    }
    out
}

ranova_rows <- function(a) {
    out <- list()
    for (r in rownames(a)) {
        out[[r]] <- list(npar = as.integer(a[r, "npar"]), logLik = a[r, "logLik"], LRT = a[r, "LRT"],
                         Df = a[r, "Df"], p = a[r, "Pr(>Chisq)"])
    }
    list(rows = out, formulae = lapply(attr(a, "formulae"), function(f) paste(deparse(f, width.cutoff = 500L),
                                                                               collapse = "")))
}

# The profile intervals of the fixed effects by brute force: each beta_j fixed at b (moved into the
# offset), the rest refitted by ML, zeta(b) = sign(b - beta_j) sqrt(deviance(b) - deviance), the ends
# roots of zeta = +-qnorm(0.975). lme4 1.1-31's own profile of a fixed effect in a weighted fit is
# wrong ("unexpected decrease in profile": its intervals are a fifth of the Wald ones); the variance
# parameters' are right.
profile_fixed <- function(case, m) {
    X <- getME(m, "X")
    d <- case$data
    base <- m@resp$offset
    y <- model.response(model.frame(m))
    bars <- vapply(lme4::findbars(as.formula(case$formula)), function(b) paste0("(", deparse(b), ")"), "")
    z <- qnorm(0.975)
    out <- list()
    for (j in colnames(X)) {
        d$.y <- y
        d$.X <- X[, colnames(X) != j, drop = FALSE]
        zeta <- function(b) {
            d$.off <- base + b * X[, j]
            f <- paste(".y ~ 0", if (ncol(d$.X)) "+ .X" else "", "+", paste(bars, collapse = " + "))
            r <- fit(f, d, FALSE, case$weights, ".off")
            sign(b - fixef(m)[[j]]) * sqrt(max(deviance(r) - deviance(m), 0))
        }
        se <- sqrt(diag(as.matrix(vcov(m))))[[j]]
        b0 <- fixef(m)[[j]]
        lo <- uniroot(function(b) zeta(b) + z, c(b0 - 4 * se, b0), tol = 1e-10)$root
        hi <- uniroot(function(b) zeta(b) - z, c(b0, b0 + 4 * se), tol = 1e-10)$root
        out[[j]] <- list(lower = lo, upper = hi)
    }
    out
}

fit_reference <- function(case, reml) {
    d <- case$data
    m <- fit(case$formula, d, reml, case$weights, case$offset)
    mt <- as_lmerModLmerTest(m)
    rc <- ranef(m, condVar = TRUE)
    re <- list()
    for (g in names(rc)) {
        v <- attr(rc[[g]], "postVar")
        re[[g]] <- list(levels = I(rownames(rc[[g]])[1:3]),
                        values = lapply(seq_len(ncol(rc[[g]])), function(j) I(rc[[g]][1:3, j])),
                        sd = lapply(seq_len(ncol(rc[[g]])), function(j) I(sqrt(v[j, j, 1:3]))))
    }
    new <- d[c(1:4, nrow(d)), ]
    res <- list(
        name = case$name, formula = case$formula, reml = reml, dataset = paste0(case$file, ".csv"),
        weights = case$weights, offset = case$offset, design = case$design, n = nobs(m),
        objective = if (reml) REMLcrit(m) else deviance(m), loglik = as.numeric(logLik(m)),
        theta = as.list(getME(m, "theta")), beta = as.list(fixef(m)),
        beta_se = as.list(sqrt(diag(as.matrix(vcov(m))))), sigma = sigma(m),
        fitted = I(unname(fitted(m)[1:10])), resid = I(unname(residuals(m)[1:10])),
        resid_pearson = I(unname(residuals(m, type = "pearson")[1:10])),
        scaled_residuals = I(unname(quantile(residuals(m, "pearson", scaled = TRUE)))),
        ranef = re,
        predict_rows = I(as.integer(c(1:4, nrow(d)) - 1L)),
        predict = I(unname(predict(m, newdata = new, allow.new.levels = TRUE))),
        satterthwaite = coef_rows(summary(mt, ddf = "Satterthwaite")),
        ranova = ranova_rows(ranova(mt)),
        feval = m@optinfo$feval
    )
    if (reml) {
        Vw <- if (is.null(case$weights)) vcovAdj(m) else vcov_adj_weighted(m)
        res$kenward_roger <- kr_rows(m, Vw)
        if (!is.null(case$weights)) res$kenward_roger_pbkrtest <- kr_rows(m, vcovAdj(m))
    }
    if (isTRUE(case$profile) && !reml) {
        ci <- suppressWarnings(confint(m, method = "profile", oldNames = FALSE))
        res$profile <- rows(ci, c(lower = 1, upper = 2))
        res$profile_fixed <- profile_fixed(case, m)
    }
    path <- file.path(OUT, sprintf("%s_%s.json", case$name, if (reml) "reml" else "ml"))
    write_json(c(res, list(versions = versions)), path)
    m
}

ss <- sleepstudy_data()
pen <- penicillin_data()
scots <- scotssec_data()
exam <- exam_data()
if (run("fits")) {
    fit_cases <- list(
        list(name = "sleepstudy_w", file = "sleepstudy_w", data = ss, design = "nested",
             formula = "Reaction ~ Days + offset(o) + (Days | Subject)", weights = "w", profile = TRUE),
        list(name = "penicillin_w", file = "penicillin_w", data = pen, design = "crossed",
             formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", weights = "w", offset = "o", profile = TRUE),
        list(name = "scotssec_cells", file = "scotssec_cells", data = scots, design = "crossed",
             formula = "attain ~ verbal + sex + (1 | primary) + (1 | second)", weights = "n"),
        list(name = "exam_w", file = "exam_w", data = exam, design = "nested",
             formula = "normexam ~ standLRT + sex + vr + (standLRT | school)", weights = "w")
    )
    for (case in fit_cases) for (reml in c(TRUE, FALSE)) fit_reference(case, reml)
}

# --- estimated marginal means -----------------------------------------------------------------------------
emm_rows <- function(e) {
    s <- as.data.frame(summary(e))
    est <- intersect(c("emmean", "prediction"), names(s))
    lo <- intersect(c("lower.CL", "asymp.LCL"), names(s))
    hi <- intersect(c("upper.CL", "asymp.UCL"), names(s))
    vars <- setdiff(names(s), c(est, "SE", "df", lo, hi))
    list(cells = lapply(vars, function(v) I(as.character(s[[v]]))), variables = I(vars),
         emmean = I(s[[est]]), SE = I(s$SE), df = I(s$df), lower = I(s[[lo]]), upper = I(s[[hi]]))
}

contrast_rows <- function(x, infer = FALSE) {
    s <- as.data.frame(summary(x, infer = c(infer, TRUE)))
    by <- setdiff(names(s), c("contrast", "estimate", "SE", "df", "lower.CL", "upper.CL", "asymp.LCL",
                              "asymp.UCL", "t.ratio", "z.ratio", "p.value"))
    out <- list(contrast = I(as.character(s$contrast)), by = lapply(by, function(v) I(as.character(s[[v]]))),
                by_variables = I(by), estimate = I(s$estimate), SE = I(s$SE), df = I(s$df),
                t = I(if ("t.ratio" %in% names(s)) s$t.ratio else s$z.ratio), p = I(s$p.value))
    if (infer) {
        out$lower <- I(s[[intersect(c("lower.CL", "asymp.LCL"), names(s))]])
        out$upper <- I(s[[intersect(c("upper.CL", "asymp.UCL"), names(s))]])
    }
    out
}

emm_reference <- function(name, data, formula, reml, specs, by = NULL, at = NULL, weights = NULL,
                          offset = NULL, modes = c("kenward-roger", "satterthwaite"), contrasts = TRUE) {
    m <- fit(formula, data, reml, weights, offset)
    res <- list(name = name, formula = formula, reml = reml, specs = specs, by = by,
                at = if (is.null(at)) NULL else at, weights = weights, offset = offset, modes = list())
    for (mode in modes) {
        t0 <- proc.time()[["elapsed"]]
        e <- emmeans(m, specs, by = by, at = at, lmer.df = mode)
        out <- list(emmeans = emm_rows(e))
        if (contrasts) {
            out$pairs_tukey <- contrast_rows(pairs(e), infer = TRUE)
            out$pairs_holm <- contrast_rows(pairs(e, adjust = "holm"), infer = TRUE)
            out$pairs_bonferroni <- contrast_rows(pairs(e, adjust = "bonferroni"))
            out$pairs_none <- contrast_rows(pairs(e, adjust = "none"))
            out$revpairwise <- contrast_rows(contrast(e, "revpairwise"))
            out$trt_vs_ctrl <- contrast_rows(contrast(e, "trt.vs.ctrl"), infer = TRUE)
            out$eff <- contrast_rows(contrast(e, "eff"))
            out$sidak <- contrast_rows(pairs(e, adjust = "sidak"), infer = TRUE)
            out$scheffe <- contrast_rows(pairs(e, adjust = "scheffe"), infer = TRUE)
        }
        out$seconds <- proc.time()[["elapsed"]] - t0
        res$modes[[mode]] <- out
    }
    if (!is.null(weights) && reml) {  # Kenward-Roger on W^-1 (see the header), from the emmeans linfct
        e <- emmeans(m, specs, by = by, at = at, lmer.df = "asymptotic")
        L <- e@linfct
        Vw <- vcov_adj_weighted(m)
        V0 <- as.matrix(vcov(m))
        est <- as.numeric(L %*% fixef(m)) + (if (is.null(e@grid$.offset.)) 0 else e@grid$.offset.)
        res$kenward_roger_weighted <- list(
            emmean = I(est), SE = I(sqrt(diag(L %*% as.matrix(Vw) %*% t(L)))),
            df = I(vapply(seq_len(nrow(L)), function(i) pbkrtest::Lb_ddf(L[i, , drop = FALSE], V0, Vw), 0)))
    }
    write_json(c(res, list(versions = versions)), file.path(OUT, paste0("emmeans_", name, ".json")))
}

machines <- machines_data()
cake <- cake_data()
oats <- oats_data()
if (run("emmeans")) {
    emm_reference("machines_reml", machines, "score ~ Machine + (1 | Worker) + (1 | Worker:Machine)", TRUE, "Machine")
    emm_reference("machines_ml", machines, "score ~ Machine + (1 | Worker) + (1 | Worker:Machine)", FALSE, "Machine")
    emm_reference("cake_by", cake, "angle ~ recipe * temperature + (1 | recipe:replicate)", TRUE, "recipe",
                  by = "temperature")
    emm_reference("cake_averaged", cake, "angle ~ recipe * temperature + (1 | recipe:replicate)", TRUE, "recipe")
    emm_reference("oats", oats, "yield ~ nitro * Variety + (1 | Block / Variety)", TRUE, "Variety")
    emm_reference("oats_at", oats, "yield ~ nitro * Variety + (1 | Block / Variety)", TRUE, "Variety", by = "nitro",
                  at = list(nitro = c(0, 0.6)), contrasts = TRUE)
    emm_reference("exam_w", exam, "normexam ~ standLRT + sex + vr + (1 | school)", TRUE, "vr", by = "sex",
                  weights = "w")
    emm_reference("sleepstudy_offset", ss, "Reaction ~ Days + g3 + offset(o) + (1 | Subject)", TRUE, "g3")
    emm_reference("sleepstudy_offset_arg", ss, "Reaction ~ Days + g3 + (1 | Subject)", FALSE, "g3", offset = "o",
                  weights = "w")
    cake_missing <- droplevels(cake[!(cake$recipe == "C" & cake$temperature == "t175"), ])
    emm_reference("cake_missing_cell", cake_missing, "angle ~ recipe * temperature + (1 | recipe:replicate)", TRUE,
                  c("recipe", "temperature"), modes = "satterthwaite", contrasts = FALSE)
}

# --- ranova's reduction of terms ------------------------------------------------------------------------
ranova_reference <- function(name, data, formula, reml, weights = NULL) {
    m <- as_lmerModLmerTest(fit(formula, data, reml, weights))
    res <- list(name = name, formula = formula, reml = reml, weights = weights,
                objective = if (reml) REMLcrit(m) else deviance(m), ranova = ranova_rows(ranova(m)),
                ranova_removed = ranova_rows(ranova(m, reduce.terms = FALSE)))
    write_json(c(res, list(versions = versions)), file.path(OUT, paste0("ranova_", name, ".json")))
}

ssz <- ss
ssz$f <- factor(ifelse(ssz$Days < 5, "early", "late"))
ssz$z <- r6(sin(seq_len(nrow(ssz))))
if (run("ranova")) {
    for (reml in c(TRUE, FALSE)) {
        k <- if (reml) "reml" else "ml"
        ranova_reference(paste0("slope_alone_", k), ssz, "Reaction ~ Days + (0 + Days | Subject)", reml)
        ranova_reference(paste0("double_bar_", k), ssz, "Reaction ~ Days + (Days || Subject)", reml)
        ranova_reference(paste0("factor_no_intercept_", k), ssz, "Reaction ~ Days + (0 + f | Subject)", reml)
        ranova_reference(paste0("factor_", k), ssz, "Reaction ~ Days + (f | Subject)", reml)
        ranova_reference(paste0("interaction_lhs_", k), ssz, "Reaction ~ Days + (1 + Days * z | Subject)", reml)
        ranova_reference(paste0("two_covariates_", k), ssz, "Reaction ~ Days + (0 + Days + z | Subject)", reml)
        ranova_reference(paste0("weighted_", k), ssz, "Reaction ~ Days + (Days | Subject)", reml, weights = "w")
        ranova_reference(paste0("machines_factor_", k), machines, "score ~ Machine + (0 + Machine | Worker)", reml)
        ranova_reference(paste0("machines_nested_", k), machines, "score ~ Machine + (1 | Worker) + (1 | Worker:Machine)",
                         reml)
    }
}

# --- InstEval: a weighted fit (the benchmark's), marginal means, and the ranova of a slope on dept ----------
if (run("insteval")) {
    ie <- insteval_data()
    ie$w <- 0.5 + (seq_len(nrow(ie)) %% 7) / 4  # exact in binary: tests/study.py makes the same
    m <- fit("y ~ service + (1 | s) + (1 | d) + (1 | dept)", ie, FALSE, "w")
    write_json(list(name = "insteval_w", formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept)", reml = FALSE,
                    weights = "w", weights_rule = "0.5 + (i %% 7) / 4 for rows i = 1..n", objective = deviance(m), theta = as.list(getME(m, "theta")),
                    beta = as.list(fixef(m)), beta_se = as.list(sqrt(diag(as.matrix(vcov(m))))), sigma = sigma(m),
                    feval = m@optinfo$feval, versions = versions), file.path(OUT, "insteval_w_ml.json"))
    emm_reference("insteval", ie, "y ~ service + (1 | s) + (1 | d) + (1 | dept)", TRUE, "service",
                  modes = "satterthwaite", contrasts = FALSE)

    # lmerTest's ranova of (1 + service | dept) with lme4's default optimizer, and every model tight
    slope <- "y ~ service + (1 | s) + (1 | d) + (1 + service | dept)"
    default_fit <- as_lmerModLmerTest(lme4::lmer(as.formula(slope), data = ie, REML = TRUE))
    tight_fit <- as_lmerModLmerTest(fit(slope, ie, TRUE))
    write_json(list(formula = slope, reml = TRUE,
                    default = list(objective = REMLcrit(default_fit), ranova = ranova_rows(ranova(default_fit)),
                                   feval = default_fit@optinfo$feval),
                    tight = list(objective = REMLcrit(tight_fit), ranova = ranova_rows(ranova(tight_fit)),
                                 feval = tight_fit@optinfo$feval),
                    versions = versions), file.path(OUT, "ranova_insteval_slope.json"))
}

# --- the profile of a fit on the boundary (Dyestuff2: the batch variance estimated at zero) --------------
dy2 <- lme4::Dyestuff2
dy2 <- write_and_read(data.frame(Yield = dy2$Yield, Batch = as.character(dy2$Batch)), "dyestuff2", "Batch")
if (run("boundary")) {
    out <- list(formula = "Yield ~ 1 + (1 | Batch)")
    for (reml in c(TRUE, FALSE)) {
        m <- fit(out$formula, dy2, reml)
        ci <- suppressMessages(confint(m, method = "profile", oldNames = FALSE))
        out[[if (reml) "reml" else "ml"]] <- list(theta = as.list(getME(m, "theta")),
                                                   profile = rows(ci, c(lower = 1, upper = 2)))
    }
    write_json(c(out, list(versions = versions)), file.path(OUT, "dyestuff2_profile.json"))
}

# --- the README's worked example: Exam's pupils as cells of school x intake band, each the mean score
# of its pupils, weighted by their number; the intake test's slope of 0.5 known beforehand (an offset) ---
e <- mlmRev::Exam
key <- interaction(e$school, e$intake, drop = TRUE)
cell <- function(x, f) as.vector(tapply(x, key, f))
first <- function(x) x[1]
cells <- data.frame(school = cell(as.character(e$school), first), intake = cell(as.character(e$intake), first),
                    schgend = cell(as.character(e$schgend), first), n = as.numeric(cell(e$normexam, length)),
                    normexam = r6(cell(e$normexam, mean)), lrt = r6(cell(e$standLRT, mean)))
cells <- write_and_read(cells, "exam_cells", c("school", "intake", "schgend"))
if (run("readme")) {
    readme_formula <- "normexam ~ intake + schgend + offset(0.5 * lrt) + (1 | school)"
    m <- as_lmerModLmerTest(fit(readme_formula, cells, TRUE, "n"))
    sat <- emmeans(m, ~ intake, lmer.df = "satterthwaite")
    kr <- emmeans(m, ~ intake)  # pbkrtest's: the prior weights ignored
    L <- kr@linfct
    Vw <- vcov_adj_weighted(m)
    V0 <- as.matrix(vcov(m))
    write_json(list(formula = readme_formula, weights = "n", objective = REMLcrit(m), beta = as.list(fixef(m)),
                    sigma = sigma(m), satterthwaite = coef_rows(summary(m)),
                    emmeans = emm_rows(sat), pairs = contrast_rows(pairs(sat)),
                    kenward_roger_pbkrtest = emm_rows(kr),
                    kenward_roger_weighted = list(
                        SE = I(sqrt(diag(L %*% as.matrix(Vw) %*% t(L)))),
                        df = I(vapply(seq_len(nrow(L)), function(i) pbkrtest::Lb_ddf(L[i, , drop = FALSE], V0, Vw), 0))),
                    printed = list(summary = I(capture.output(print(summary(m)$coefficients))),
                                   emmeans = I(capture.output(print(sat))), pairs = I(capture.output(print(pairs(sat)))),
                                   emmeans_kr = I(capture.output(print(kr)))),
                    versions = versions), file.path(OUT, "readme_example.json"))
}

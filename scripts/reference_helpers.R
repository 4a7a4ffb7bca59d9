# What the reference scripts (scripts/make_*.R) share: the JSON writer (doubles with 17 significant
# digits, integral values with a trailing ".0", R integers as integers, NA and non-finite values as
# null, a length-1 vector as a scalar unless wrapped in I(), unnamed lists as arrays), and the data
# written to CSV and read back exactly (factors as strings, re-made with factor(); into the calling
# script's OUT).

json_scalar <- function(x) {
    if (is.na(x)) return("null")
    if (is.logical(x)) return(if (x) "true" else "false")
    if (is.integer(x)) return(sprintf("%d", x))
    if (is.numeric(x)) {
        if (!is.finite(x)) return("null")
        s <- sprintf("%.17g", x)
        if (!grepl("[.eE]", s)) s <- paste0(s, ".0")
        return(s)
    }
    as.character(jsonlite::toJSON(as.character(x), auto_unbox = TRUE))
}

to_json <- function(x, indent = 0L) {
    pad <- strrep("  ", indent + 1L)
    end <- strrep("  ", indent)
    if (is.null(x)) return("null")
    if (is.list(x)) {
        if (length(x) == 0L) return(if (is.null(names(x))) "[]" else "{}")
        if (is.null(names(x))) {
            items <- vapply(x, to_json, "", indent = indent + 1L)
            return(paste0("[\n", paste0(pad, items, collapse = ",\n"), "\n", end, "]"))
        }
        keys <- vapply(names(x), json_scalar, "")
        items <- vapply(x, to_json, "", indent = indent + 1L)
        return(paste0("{\n", paste0(pad, keys, ": ", items, collapse = ",\n"), "\n", end, "}"))
    }
    if (length(x) == 1L && !inherits(x, "AsIs")) return(json_scalar(x))
    paste0("[", paste(vapply(seq_along(x), function(i) json_scalar(unclass(x)[[i]]), ""),
                      collapse = ", "), "]")
}

write_json <- function(x, path) {
    writeLines(to_json(x), path)
    cat("wrote", path, "\n")
}

write_and_read <- function(data, name, factors, out = OUT) {
    path <- file.path(out, paste0(name, ".csv"))
    for (f in factors) data[[f]] <- as.character(data[[f]])
    stopifnot(!any(vapply(data, function(col) any(grepl("[,\"]", col)), TRUE)))
    write.csv(data, path, row.names = FALSE, quote = FALSE)
    cat("wrote", path, "\n")
    header <- names(read.csv(path, nrows = 1, check.names = FALSE))
    classes <- ifelse(header %in% factors, "character", "numeric")
    back <- read.csv(path, colClasses = setNames(classes, header), check.names = FALSE)
    stopifnot(isTRUE(all.equal(back, data, tolerance = 0)))
    for (f in factors) back[[f]] <- factor(back[[f]])
    back
}

machines_data <- function() {
    d <- nlme::Machines  # 6 workers x 3 machines x 3 replicates; Worker is an ordered factor there
    d <- data.frame(score = as.numeric(d$score), Machine = as.character(d$Machine),
                    Worker = as.character(d$Worker))
    write_and_read(d, "machines", c("Machine", "Worker"))
}

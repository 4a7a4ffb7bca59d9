"""Seeded synthetic data sets for tests and benchmarks.

Two generators, both vectorized (10⁶ rows take well under a second) and
deterministic given ``seed`` (``numpy.random.default_rng(seed)``):

``simulate_crossed(n)``
    Students × items with items nested in departments: a crossed design in
    the shape of lme4's InstEval, fitted by :data:`CROSSED_FORMULA`.
``simulate_nested(n)``
    Repeated measures on subjects with a correlated random intercept and
    slope, fitted by :data:`NESTED_FORMULA`.

Grouping columns are :class:`pandas.Categorical` with string labels whose
categories are exactly the levels that occur, so they are always factors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CROSSED_FORMULA", "NESTED_FORMULA", "RATINGS_FORMULA", "RATINGS_SHAPES", "simulate_crossed",
           "simulate_crossed_pieces",
           "simulate_nested", "simulate_ratings"]

CROSSED_FORMULA = "y ~ x + treat + (1|student) + (1|item) + (1|dept)"
"""The model :func:`simulate_crossed` generates from."""

NESTED_FORMULA = "y ~ time + (1 + time|subject)"
"""The model :func:`simulate_nested` generates from."""

RATINGS_FORMULA = "rating ~ 1 + (1|user) + (1|item)"
"""The model :func:`simulate_ratings` generates from."""

#: MovieLens's shapes: (ratings, users, items) of ML-1M, ML-10M and ML-25M.
RATINGS_SHAPES = {"1M": (1_000_209, 6_040, 3_706), "10M": (10_000_054, 69_878, 10_677),
                  "25M": (25_000_095, 162_541, 59_047)}

N_DEPTS = 20


def _cover(rng: np.random.Generator, k: int, n: int, p: np.ndarray | None = None) -> np.ndarray:
    """n codes in ``0 .. k-1``, each occurring at least once.

    The first k codes are ``0 .. k-1``, the other n - k are drawn with
    probabilities ``p`` (uniform if None); the result is randomly permuted.
    """
    if k > n:
        raise ValueError(f"cannot place {k} levels in {n} rows")
    codes = np.empty(n, dtype=np.int64)
    codes[:k] = np.arange(k)
    if p is None:
        codes[k:] = rng.integers(0, k, size=n - k)
    else:
        codes[k:] = rng.choice(k, size=n - k, p=p)
    return rng.permutation(codes)


def _factor(codes: np.ndarray, prefix: str, k: int) -> pd.Categorical:
    """A categorical with labels ``prefix`` + zero-padded code (so they sort as codes)."""
    width = len(str(k - 1))
    labels = [f"{prefix}{i:0{width}d}" for i in range(k)]
    return pd.Categorical.from_codes(codes, categories=labels)


def simulate_crossed(n: int, seed: int = 0) -> pd.DataFrame:
    """Students rating items, items nested in departments (a crossed design).

    Parameters
    ----------
    n : int
        Number of rows (ratings); at least 20.
    seed : int
        Seed for :func:`numpy.random.default_rng`; the same seed gives an
        identical frame.

    Returns
    -------
    pandas.DataFrame
        n rows, columns ``y`` (float), ``x`` (float), ``treat`` (categorical,
        levels ``"a"``, ``"b"``), ``student``, ``item``, ``dept``
        (categoricals with string labels ``s0…``, ``i0…``, ``d00…d19``).

    Notes
    -----
    Sizes: ``S = max(1, n // 50)`` students, ``I = max(20, n // 500)`` items
    and ``D = 20`` departments; every level occurs at least once. Below
    n = 20,000 there are 20 items, one per department, so the item and
    department variances are not separately identified there.

    Generating model, in the order the random numbers are drawn:

    1. Item popularity weights ``w_i ~ LogNormal(0, 1)``, normalized: a
       skewed distribution, so a few items are rated many times more often
       than the median item.
    2. Department of each item: every department gets at least one item,
       the rest uniformly at random.
    3. Student of each row: uniform over students; item of each row: drawn
       with probabilities ``w``; ``dept`` is the item's department. (Each
       level is first placed once, then the rows are shuffled.)
    4. ``x ~ N(0, 1)``; ``treat`` uniform over ``{"a", "b"}``.
    5. Effects ``u_student ~ N(0, 0.5²)``, ``u_item ~ N(0, 0.8²)``,
       ``u_dept ~ N(0, 0.3²)``, noise ``e ~ N(0, 1)``, all independent, and

       ``y = 3 + 0.5 x + 0.2 [treat == "b"] + u_student + u_item + u_dept + e``.

    Fit with :data:`CROSSED_FORMULA`,
    ``"y ~ x + treat + (1|student) + (1|item) + (1|dept)"``.
    """
    n = int(n)
    if n < N_DEPTS:
        raise ValueError(f"n must be at least {N_DEPTS}, got {n}")
    rng = np.random.default_rng(seed)
    n_students = max(1, n // 50)
    n_items = max(N_DEPTS, n // 500)

    weights = rng.lognormal(0.0, 1.0, size=n_items)
    weights /= weights.sum()
    item_dept = _cover(rng, N_DEPTS, n_items)

    student = _cover(rng, n_students, n)
    item = _cover(rng, n_items, n, p=weights)
    dept = item_dept[item]

    x = rng.standard_normal(n)
    treat = _cover(rng, 2, n)

    u_student = rng.normal(0.0, 0.5, size=n_students)
    u_item = rng.normal(0.0, 0.8, size=n_items)
    u_dept = rng.normal(0.0, 0.3, size=N_DEPTS)
    noise = rng.standard_normal(n)

    y = 3.0 + 0.5 * x + 0.2 * treat + u_student[student] + u_item[item] + u_dept[dept] + noise
    return _crossed_frame(y, x, treat, student, item, dept, n_students, n_items)


def _crossed_frame(y, x, treat, student, item, dept, n_students, n_items, index=None) -> pd.DataFrame:
    """The columns of :func:`simulate_crossed`, its categoricals over every level."""
    return pd.DataFrame({
        "y": y,
        "x": x,
        "treat": pd.Categorical.from_codes(treat, categories=["a", "b"]),
        "student": _factor(student, "s", n_students),
        "item": _factor(item, "i", n_items),
        "dept": _factor(dept, "d", N_DEPTS),
    }, index=index)


def simulate_crossed_pieces(n: int, piece_rows: int = 1_000_000, seed: int = 0, n_students: int = 10_000,
                            n_items: int = 1_000):
    """:func:`simulate_crossed`'s design at a fixed number of students and items, a piece at a time:
    rows beyond memory (``sparselmm.stream``).

    Yields ``ceil(n / piece_rows)`` DataFrames with the columns of :func:`simulate_crossed`, their
    categoricals over every student, item and department. The item weights, departments and
    effects are drawn once from ``default_rng(seed)``; piece i's rows from ``default_rng([seed, i])``
    (students uniform, items by weight, then x, treat and noise), so any piece can be made alone.
    Every level occurs with high probability, not surely (10⁸ rows over 10⁴ students: always).
    """
    n, piece_rows = int(n), int(piece_rows)
    if n < 1 or piece_rows < 1:
        raise ValueError(f"n and piece_rows must be positive, got {n} and {piece_rows}")
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.0, size=n_items)
    weights /= weights.sum()
    item_dept = _cover(rng, N_DEPTS, n_items)
    u_student = rng.normal(0.0, 0.5, size=n_students)
    u_item = rng.normal(0.0, 0.8, size=n_items)
    u_dept = rng.normal(0.0, 0.3, size=N_DEPTS)
    for i, start in enumerate(range(0, n, piece_rows)):
        m = min(piece_rows, n - start)
        r = np.random.default_rng([seed, i])
        student = r.integers(0, n_students, m)
        item = r.choice(n_items, size=m, p=weights)
        dept = item_dept[item]
        x = r.standard_normal(m)
        treat = r.integers(0, 2, m)
        y = 3.0 + 0.5 * x + 0.2 * treat + u_student[student] + u_item[item] + u_dept[dept] + r.standard_normal(m)
        yield _crossed_frame(y, x, treat, student, item, dept, n_students, n_items, pd.RangeIndex(start, start + m))


def simulate_nested(n: int, seed: int = 0, n_subjects: int | None = None) -> pd.DataFrame:
    """Repeated measures: a random intercept and slope in ``time`` per subject.

    Parameters
    ----------
    n : int
        Number of rows (observations); at least 1.
    seed : int
        Seed for :func:`numpy.random.default_rng`; the same seed gives an
        identical frame.
    n_subjects : int, optional
        Number of subjects, ``1 <= n_subjects <= n``; default
        ``max(1, n // 10)``.

    Returns
    -------
    pandas.DataFrame
        n rows, columns ``y`` (float), ``time`` (float), ``subject``
        (categorical with string labels ``s0…``), sorted by subject and time.

    Notes
    -----
    Generating model, in the order the random numbers are drawn:

    1. Subject of each row: every subject once, the other rows uniformly at
       random (so each subject has at least one row, about n / n_subjects on
       average).
    2. ``time ~ Uniform(0, 5)`` per row.
    3. Per subject ``(b0, b1) ~ N(0, Σ)`` with sd 1.0 and 0.5 and correlation
       0.3, i.e. ``Σ = [[1, 0.15], [0.15, 0.25]]`` (drawn as ``L z`` with
       ``L`` the Cholesky factor of Σ and ``z`` standard normal, shape
       (n_subjects, 2)); noise ``e ~ N(0, 1)``; and

       ``y = 2 + 0.7 time + b0[subject] + b1[subject] time + e``.

    Fit with :data:`NESTED_FORMULA`, ``"y ~ time + (1 + time|subject)"``.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    n_subjects = max(1, n // 10) if n_subjects is None else int(n_subjects)
    if not 1 <= n_subjects <= n:
        raise ValueError(f"n_subjects must be between 1 and n={n}, got {n_subjects}")
    rng = np.random.default_rng(seed)

    subject = _cover(rng, n_subjects, n)
    time = rng.uniform(0.0, 5.0, size=n)
    order = np.lexsort((time, subject))
    subject, time = subject[order], time[order]

    sd = np.array([1.0, 0.5])
    corr = np.array([[1.0, 0.3], [0.3, 1.0]])
    chol = np.linalg.cholesky(corr * np.outer(sd, sd))
    b = rng.standard_normal((n_subjects, 2)) @ chol.T
    noise = rng.standard_normal(n)

    y = 2.0 + 0.7 * time + b[subject, 0] + b[subject, 1] * time + noise
    return pd.DataFrame({
        "y": y,
        "time": time,
        "subject": _factor(subject, "s", n_subjects),
    })


def _power_law(rng: np.random.Generator, k: int, head: float = 50.0) -> np.ndarray:
    """Weights of k levels, (rank + k/head)⁻¹ in a random order, normalized: the busiest level is about
    ``head`` / ln(head + 1) times the mean (MovieLens-1M: users 14×, items 13×)."""
    w = 1.0 / (np.arange(1, k + 1) + k / head)
    return rng.permutation(w / w.sum())


def simulate_ratings(n: int, n_users: int, n_items: int, seed: int = 0) -> pd.DataFrame:
    """Users rating items, shaped like MovieLens: a large crossed design of two factors.

    Parameters
    ----------
    n : int
        Number of rows (ratings); at least ``max(n_users, n_items)``.
    n_users, n_items : int
        Levels of the two factors, each at least 1; every level occurs at least once.
        :data:`RATINGS_SHAPES` has MovieLens's (e.g. ``simulate_ratings(*RATINGS_SHAPES["10M"])``).
    seed : int
        Seed for :func:`numpy.random.default_rng`; the same seed gives an identical frame.

    Returns
    -------
    pandas.DataFrame
        n rows, columns ``rating`` (float), ``user`` and ``item`` (categoricals with string
        labels ``u…``, ``m…`` that sort as their codes).

    Notes
    -----
    Generating model, in the order the random numbers are drawn:

    1. Activity of users and popularity of items: power-law weights (:func:`_power_law`,
       ``(rank + k/50)⁻¹``), so the busiest user and the most popular item have about 13 times
       the mean number of ratings, and the busiest fifth of the users gives some 60 % of them.
    2. User and item of each row: drawn with those weights, each level first placed once, the
       rows shuffled. A (user, item) pair may occur more than once.
    3. ``u_user ~ N(0, 0.45²)``, ``u_item ~ N(0, 0.5²)``, noise ``e ~ N(0, 0.85²)``, and

       ``rating = 3.5 + u_user + u_item + e``

       (continuous: MovieLens's half stars would make the model misspecified).

    Fit with :data:`RATINGS_FORMULA`, ``"rating ~ 1 + (1|user) + (1|item)"``.
    """
    n, n_users, n_items = int(n), int(n_users), int(n_items)
    if n_users < 1 or n_items < 1:
        raise ValueError(f"n_users and n_items must be at least 1, got {n_users} and {n_items}")
    if n < max(n_users, n_items):
        raise ValueError(f"n must be at least max(n_users, n_items) = {max(n_users, n_items)}, got {n}")
    rng = np.random.default_rng(seed)
    activity = _power_law(rng, n_users)
    popularity = _power_law(rng, n_items)
    user = _cover(rng, n_users, n, p=activity)
    item = _cover(rng, n_items, n, p=popularity)
    u_user = rng.normal(0.0, 0.45, size=n_users)
    u_item = rng.normal(0.0, 0.5, size=n_items)
    noise = rng.normal(0.0, 0.85, size=n)
    return pd.DataFrame({
        "rating": 3.5 + u_user[user] + u_item[item] + noise,
        "user": _factor(user, "u", n_users),
        "item": _factor(item, "m", n_items),
    })

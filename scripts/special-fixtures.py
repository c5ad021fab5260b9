#!/usr/bin/env python3
"""Reference values for the tests of src/special/scalar.rs, written to tests/fixtures/special/.

    python3 -m venv /tmp/fixtures-venv
    /tmp/fixtures-venv/bin/pip install scipy==1.17.1 mpmath==1.4.1
    /tmp/fixtures-venv/bin/python scripts/special-fixtures.py          # writes the files
    /tmp/fixtures-venv/bin/python scripts/special-fixtures.py --check  # compares with them

Files (CSV; lines starting with '#' are comments, then a header row; every value is Python's
repr(float(v)), which parses back to the same double):
  polygamma.csv     x, gammaln(x), digamma(x), polygamma(1, x), polygamma(2, x)      (SciPy)
  gammainc.csv      a, x, gammainc(a, x), gammaincc(a, x)                            (SciPy)
  gammaincinv.csv   a, p, gammaincinv(a, p)                                          (SciPy)
  gamma_p_da.csv    a, x, dP/da, -(dP/da)/pdf                           (mpmath, 40 digits)
  gamma_grad.csv    a, x, -(dP/da)/pdf to 16 significant digits       (mpmath, 50 digits)
The SciPy tables' comment line also gives SciPy's own worst relative error on the grid against
mpmath at 40 digits.
"""
import argparse
import os
import sys

import mpmath as mp
import numpy as np
import scipy
import scipy.special as sc

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "special")


def rel(got, want):
    got, want = mp.mpf(got), mp.mpf(want)
    if got == want:
        return 0.0
    return float(abs(got - want) / abs(want)) if want != 0 else float(abs(got))


def render(header, comments, rows):
    lines = ["# " + c for c in comments] + [",".join(header)]
    lines += [",".join(v if isinstance(v, str) else repr(float(v)) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def polygamma():
    xs = list(np.logspace(-6, 6, 49))
    xs += [0.5, 0.75, 0.9, 0.99, 1.0, 1.01, 1.1, 1.25, 1.4616321449683622, 1.47, 1.5, 1.9, 1.99]
    xs += [2.0, 2.01, 2.1, 2.5, 3.0, 7.5, 9.99, 10.0, 10.01, 33.3]
    xs = sorted(set(float(x) for x in xs))
    xs += [-0.5, -1.5, -2.25, -3.7, -10.1, -0.001]
    rows, worst = [], [0.0] * 4
    mp.mp.dps = 40
    for x in xs:
        row = [x] + [float(v) for v in (sc.gammaln(x), sc.digamma(x), sc.polygamma(1, x), sc.polygamma(2, x))]
        exact = [mp.log(abs(mp.gamma(x))), mp.digamma(x), mp.polygamma(1, x), mp.polygamma(2, x)]
        worst = [max(w, rel(v, e)) for w, v, e in zip(worst, row[1:], exact)]
        rows.append(row)
    err = "SciPy vs mpmath max rel err on this grid: lgamma={:.2e} digamma={:.2e} trigamma={:.2e} tetragamma={:.2e}".format(*worst)
    return ["x", "gammaln", "digamma", "trigamma", "tetragamma"], [err], rows


def gammainc():
    a_s = [1e-3, 0.01, 0.1, 0.5, 1, 1.5, 2, 3.7, 5, 10, 20, 50, 100, 500, 1e3, 1e4]
    mults = [0.01, 0.1, 0.5, 0.9, 1, 1.1, 1.5, 2, 5]
    rows, wp, wq = [], 0.0, 0.0
    mp.mp.dps = 40
    for a in a_s:
        a = float(a)
        xs = sorted(set([a * m for m in mults] + [1e-3, 0.1, 1.0, 10.0]))
        for x in xs:
            p, q = float(sc.gammainc(a, x)), float(sc.gammaincc(a, x))
            if p < 1e-290 or q < 1e-290:
                continue
            wp = max(wp, rel(p, mp.gammainc(a, 0, x, regularized=True)))
            wq = max(wq, rel(q, mp.gammainc(a, x, mp.inf, regularized=True)))
            rows.append([a, x, p, q])
    err = "SciPy vs mpmath max rel err on this grid: gammainc={:.2e} gammaincc={:.2e}".format(wp, wq)
    return ["a", "x", "gammainc", "gammaincc"], [err], rows


def gammaincinv():
    a_s = [0.01, 0.1, 0.5, 1, 2, 5, 10, 50, 200, 1e3]
    ps = [1e-10, 1e-3, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999999]
    rows = []
    for a in a_s:
        for p in ps:
            x = float(sc.gammaincinv(float(a), p))
            if x < 1e-290:
                continue
            rows.append([float(a), p, x])
    return ["a", "p", "gammaincinv"], [], rows


def dp_da(a, x):
    return mp.diff(lambda s: mp.gammainc(s, 0, x, regularized=True), a)


def gamma_p_da():
    # Points covering every branch of gamma_p_da: power series, small-a Q series, continued
    # fraction, large a, and deep tails.
    points = [(0.01, 0.2594856808942291), (0.1, 0.001), (0.3, 1.2), (0.5, 0.05), (1.0, 0.6931471805599453),
              (2.5, 7.0), (3.0, 0.5), (8.5, 30.0), (10.0, 4.130199166273199), (50.0, 49.0), (200.0, 260.0),
              (1000.0, 927.9), (10000.0, 10000.0), (0.02, 16.0)]
    mp.mp.dps = 40
    rows = []
    for a, x in points:
        a, x = mp.mpf(a), mp.mpf(x)
        d = dp_da(a, x)
        pdf = mp.exp((a - 1) * mp.log(x) - x - mp.loggamma(a))
        rows.append([a, x, d, -d / pdf])
    return ["a", "x", "dp_da", "gamma_grad"], ["mpmath {} at 40 digits".format(mp.__version__)], rows


def gamma_grad():
    # x: quantiles of Gamma(a, 1) and a few tail points.
    points = [(0.1, 0.21883396264412958), (0.1, 0.0005071429028589056), (0.01, 0.2594856808942291),
              (1.0, 0.6931471805599452), (10.0, 4.130199166273199)]
    mp.mp.dps = 50
    rows = []
    for a, x in points:
        a, x = mp.mpf(a), mp.mpf(x)
        rows.append([a, x, mp.nstr(-dp_da(a, x) / (x ** (a - 1) * mp.exp(-x) / mp.gamma(a)), 16)])
    return ["a", "x", "gamma_grad"], ["mpmath {} at 50 digits; gamma_grad to 16 significant digits".format(mp.__version__)], rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing them")
    args = ap.parse_args()
    tables = {
        "polygamma.csv": polygamma,
        "gammainc.csv": gammainc,
        "gammaincinv.csv": gammaincinv,
        "gamma_p_da.csv": gamma_p_da,
        "gamma_grad.csv": gamma_grad,
    }
    source = "scripts/special-fixtures.py (SciPy {}, NumPy {}, mpmath {})".format(scipy.__version__, np.__version__, mp.__version__)
    os.makedirs(OUT, exist_ok=True)
    differ = []
    for name, make in tables.items():
        header, comments, rows = make()
        text = render(header, ["written by " + source] + comments, rows)
        path = os.path.join(OUT, name)
        if args.check:
            old = open(path).read() if os.path.exists(path) else ""
            # The first comment line names the library versions; compare the rest.
            if old.split("\n", 1)[-1] != text.split("\n", 1)[-1]:
                differ.append(name)
            print("{}: {} rows, {}".format(name, len(rows), "differs" if name in differ else "identical"))
        else:
            with open(path, "w") as f:
                f.write(text)
            print("{}: {} rows".format(path, len(rows)))
    if differ:
        sys.exit("differ from the committed files: " + ", ".join(differ))


if __name__ == "__main__":
    main()

// Special functions for the CUDA kernels of varattn: a line-by-line port of
// src/special/scalar.rs (same series, recurrences, asymptotic expansions and constants), so that
// the GPU evaluates exactly the algorithms the CPU does. Everything is evaluated in double.
//
// This header compiles as CUDA (nvcc: device functions, constants in __constant__ memory) and as
// plain C++ (host functions), which is how tests/cuda_kernels_host.rs checks the port against
// scalar.rs on a machine without a GPU.
#pragma once

#ifdef __CUDACC__
#define VA_FN __device__ static inline
#define VA_CONST __constant__ static const
#else
#include <math.h>
#define VA_FN static inline
#define VA_CONST static const
#endif

#define VA_PI 3.141592653589793
#define VA_EULER_GAMMA 0.5772156649015329
#define VA_HALF_LN_2PI 0.9189385332046728
#define VA_ASYMPTOTIC_THRESHOLD 10.0
#define VA_DIGAMMA_ROOT 1.4616321449683622

// zeta(k) - 1 for k = 2..=30.
VA_CONST double VA_ZETA_M1[29] = {
    0.6449340668482264,
    0.2020569031595943,
    0.08232323371113819,
    0.03692775514336993,
    0.01734306198444914,
    0.008349277381922827,
    0.004077356197944339,
    0.002008392826082214,
    0.0009945751278180853,
    0.0004941886041194646,
    0.0002460865533080483,
    0.0001227133475784891,
    6.124813505870483e-5,
    3.058823630702049e-5,
    1.528225940865187e-5,
    7.637197637899762e-6,
    3.81729326499984e-6,
    1.908212716553939e-6,
    9.53962033872796e-7,
    4.769329867878065e-7,
    2.38450502727733e-7,
    1.192199259653111e-7,
    5.960818905125948e-8,
    2.980350351465228e-8,
    1.490155482836504e-8,
    7.450711789835429e-9,
    3.725334024788457e-9,
    1.862659723513049e-9,
    9.313274324196682e-10
};

// Even Bernoulli numbers B_2, B_4, ..., B_18.
VA_CONST double VA_BERNOULLI_EVEN[9] = {
    1.0 / 6.0,
    -1.0 / 30.0,
    1.0 / 42.0,
    -1.0 / 30.0,
    5.0 / 66.0,
    -691.0 / 2730.0,
    7.0 / 6.0,
    -3617.0 / 510.0,
    43867.0 / 798.0
};

// Taylor coefficients of digamma around VA_DIGAMMA_ROOT: c_k = psi^(k)(x0) / k!.
VA_CONST double VA_DIGAMMA_ROOT_TAYLOR[25] = {
    -9.241265521729428e-17,
    0.9676722454476213,
    -0.4427631689835922,
    0.2584997609556511,
    -0.16394270544240658,
    0.10782405069126241,
    -0.07219956125645474,
    0.04880428816414313,
    -0.03316112647484738,
    0.02259764823221812,
    -0.01542476590494897,
    0.010538791616612184,
    -0.007204534386356874,
    0.004926781395729858,
    -0.003369801655439331,
    0.00230512632673493,
    -0.001576936771430199,
    0.0010788252019162978,
    -0.000738070938996006,
    0.0005049532658346027,
    -0.0003454680251063082,
    0.00023635601564027087,
    -0.00016170622091974828,
    0.00011063372768747428,
    -7.569179582195078e-5
};

// Coefficients of PyTorch's bivariate rational approximation (standard_gamma_grad).
VA_CONST double VA_COEF_UV[3][8] = {
    {0.16009398, -0.094634809, 0.025146376, -0.0030648343, 1.0, 0.32668115, 0.10406089, 0.0014179084},
    {0.53487893, 0.1298071, 0.065735949, -0.0015649758, 0.16639465, 0.020070113, -0.0035938915, -0.00058392623},
    {0.040121004, -0.0065914022, -0.0026286047, -0.0013441777, 0.017050642, -0.0021309326, 0.00085092367, -1.5247877e-07}
};

VA_FN double va_nan(void) { return nan(""); }

// sin(pi x) with exact reduction of x mod 2 (scalar.rs: sinpi).
VA_FN double va_sinpi(double x) {
    if (!isfinite(x)) return va_nan();
    double r = x - 2.0 * round(0.5 * x);
    if (r > 0.5) {
        r = 1.0 - r;
    } else if (r < -0.5) {
        r = -1.0 - r;
    }
    return sin(VA_PI * r);
}

// cos(pi x) with exact reduction (scalar.rs: cospi).
VA_FN double va_cospi(double x) {
    if (!isfinite(x)) return va_nan();
    double r = fabs(x - 2.0 * round(0.5 * x));
    if (r <= 0.25) return cos(VA_PI * r);
    if (r <= 0.75) return sin(VA_PI * (0.5 - r));
    return -cos(VA_PI * (1.0 - r));
}

// Stirling correction sum_k B_2k / (2k (2k - 1) x^(2k-1)), x >= 10.
VA_FN double va_stirling_correction(double x) {
    double z = 1.0 / (x * x);
    double sum = 0.0;
    for (int k = 9; k >= 1; --k) {
        double kf = (double)k;
        sum = sum * z + VA_BERNOULLI_EVEN[k - 1] / (2.0 * kf * (2.0 * kf - 1.0));
    }
    return sum / x;
}

// ln Gamma(1 + z), |z| <= 1/4: -gamma z + sum_{k>=2} (-1)^k zeta(k) z^k / k.
VA_FN double va_lgamma1p_series(double z) {
    double sum = 0.0;
    double zk = -z;
    for (int i = 0; i < 29; ++i) {
        double k = (double)(i + 2);
        zk *= -z;
        sum += (1.0 + VA_ZETA_M1[i]) * zk / k;
    }
    return -VA_EULER_GAMMA * z + sum;
}

// ln Gamma(2 + z), |z| <= 1/2: (1 - gamma) z + sum_{k>=2} (-1)^k (zeta(k) - 1) z^k / k.
VA_FN double va_lgamma2p_series(double z) {
    double sum = 0.0;
    double zk = -z;
    for (int i = 0; i < 29; ++i) {
        double k = (double)(i + 2);
        zk *= -z;
        sum += VA_ZETA_M1[i] * zk / k;
    }
    return (1.0 - VA_EULER_GAMMA) * z + sum;
}

// ln Gamma(x) for x > 0 (scalar.rs: lgamma, positive branch).
VA_FN double va_lgamma_pos(double x) {
    if (x >= VA_ASYMPTOTIC_THRESHOLD) {
        return (x - 0.5) * log(x) - x + VA_HALF_LN_2PI + va_stirling_correction(x);
    }
    if (x < 0.25) return va_lgamma1p_series(x) - log(x);
    if (x < 0.5) return va_lgamma2p_series(x) - log(x * (1.0 + x));
    if (x >= 0.75 && x <= 1.25) return va_lgamma1p_series(x - 1.0);
    if (x < 1.5) return va_lgamma2p_series(x - 1.0) - log(x);
    double n = fmax(round(x - 2.0), 0.0);
    double z = x - (2.0 + n);
    double prod = 1.0;
    for (double k = 1.0; k <= n; k += 1.0) prod *= x - k;
    return va_lgamma2p_series(z) + log(prod);
}

// ln |Gamma(x)|; +inf at 0 and the negative integers (scalar.rs: lgamma).
VA_FN double va_lgamma(double x) {
    if (isnan(x)) return va_nan();
    if (isinf(x) && x > 0.0) return x;
    if (x <= 0.0) {
        if (x == floor(x)) return INFINITY;
        double s = fabs(va_sinpi(x));
        return log(VA_PI) - log(s) - va_lgamma_pos(1.0 - x);
    }
    return va_lgamma_pos(x);
}

// psi(x) for x > 0 (scalar.rs: digamma, positive branch).
VA_FN double va_digamma_pos(double x) {
    double z0 = x - VA_DIGAMMA_ROOT;
    if (fabs(z0) < 0.2) {
        double sum = 0.0;
        for (int i = 24; i >= 0; --i) sum = sum * z0 + VA_DIGAMMA_ROOT_TAYLOR[i];
        return sum;
    }
    double y = x;
    double acc = 0.0;
    while (y < VA_ASYMPTOTIC_THRESHOLD) {
        acc -= 1.0 / y;
        y += 1.0;
    }
    double z = 1.0 / (y * y);
    double series = 0.0;
    for (int k = 9; k >= 1; --k) series = series * z + VA_BERNOULLI_EVEN[k - 1] / (2.0 * (double)k);
    return acc + log(y) - 0.5 / y - series * z;
}

// psi(x) = d/dx ln Gamma(x); NaN at the poles (scalar.rs: digamma).
VA_FN double va_digamma(double x) {
    if (isnan(x)) return va_nan();
    if (isinf(x) && x > 0.0) return x;
    if (x <= 0.0) {
        if (x == floor(x)) return va_nan();
        double cot = va_cospi(x) / va_sinpi(x);
        return va_digamma_pos(1.0 - x) - VA_PI * cot;
    }
    return va_digamma_pos(x);
}

// psi'(x) for x > 0 (scalar.rs: trigamma, positive branch).
VA_FN double va_trigamma_pos(double x) {
    double y = x;
    double acc = 0.0;
    while (y < VA_ASYMPTOTIC_THRESHOLD) {
        acc += 1.0 / (y * y);
        y += 1.0;
    }
    double z = 1.0 / (y * y);
    double series = 0.0;
    for (int i = 8; i >= 0; --i) series = series * z + VA_BERNOULLI_EVEN[i];
    return acc + (1.0 + 0.5 / y + series * z) / y;
}

// psi'(x); NaN at the poles (scalar.rs: trigamma).
VA_FN double va_trigamma(double x) {
    if (isnan(x)) return va_nan();
    if (isinf(x) && x > 0.0) return 0.0;
    if (x <= 0.0) {
        if (x == floor(x)) return va_nan();
        double s = va_sinpi(x);
        return VA_PI * VA_PI / (s * s) - va_trigamma_pos(1.0 - x);
    }
    return va_trigamma_pos(x);
}

// psi''(x) for x > 0 (scalar.rs: tetragamma, positive branch).
VA_FN double va_tetragamma_pos(double x) {
    double y = x;
    double acc = 0.0;
    while (y < VA_ASYMPTOTIC_THRESHOLD) {
        acc -= 2.0 / (y * y * y);
        y += 1.0;
    }
    double z = 1.0 / (y * y);
    double series = 0.0;
    for (int k = 9; k >= 1; --k) series = series * z + (2.0 * (double)k + 1.0) * VA_BERNOULLI_EVEN[k - 1];
    return acc - (1.0 + 1.0 / y + series * z) * z;
}

// psi''(x); NaN at the poles (scalar.rs: tetragamma).
VA_FN double va_tetragamma(double x) {
    if (isnan(x)) return va_nan();
    if (isinf(x) && x > 0.0) return 0.0;
    if (x <= 0.0) {
        if (x == floor(x)) return va_nan();
        double s = va_sinpi(x);
        double c = va_cospi(x);
        return va_tetragamma_pos(1.0 - x) - 2.0 * VA_PI * VA_PI * VA_PI * c / (s * s * s);
    }
    return va_tetragamma_pos(x);
}

// ln(1 + e^x) without overflow (scalar.rs: softplus).
VA_FN double va_softplus(double x) {
    if (x > 20.0) return x + log1p(exp(-x));
    if (x < -20.0) return exp(x);
    return log1p(exp(x));
}

// dx/dalpha of x ~ Gamma(alpha, 1): PyTorch's standard_gamma_grad_one as ported in
// scalar.rs (standard_gamma_grad): Taylor series for x < 0.8, Rice's saddle point for alpha > 8,
// otherwise the bivariate rational fit.
VA_FN double va_standard_gamma_grad(double alpha, double x) {
    if (x < 0.8) {
        double numer = 1.0;
        double denom = alpha;
        double series1 = numer / denom;
        double series2 = numer / (denom * denom);
        for (int i = 1; i <= 5; ++i) {
            numer *= -x / (double)i;
            denom += 1.0;
            series1 += numer / denom;
            series2 += numer / (denom * denom);
        }
        double pow_x_alpha = pow(x, alpha);
        double gamma_pdf = pow(x, alpha - 1.0) * exp(-x);
        double gamma_cdf = pow_x_alpha * series1;
        double gamma_cdf_alpha = (log(x) - va_digamma(alpha)) * gamma_cdf - pow_x_alpha * series2;
        double result = -gamma_cdf_alpha / gamma_pdf;
        return isnan(result) ? 0.0 : result;
    }
    if (alpha > 8.0) {
        if (0.9 * alpha <= x && x <= 1.1 * alpha) {
            double numer_1 = 1.0 + 24.0 * alpha * (1.0 + 12.0 * alpha);
            double numer_2 = 1440.0 * (alpha * alpha) + 6.0 * x * (53.0 - 120.0 * x)
                - 65.0 * x * x / alpha + alpha * (107.0 + 3600.0 * x);
            double denom = 1244160.0 * (alpha * alpha) * (alpha * alpha);
            return numer_1 * numer_2 / denom;
        }
        double denom = sqrt(8.0 * alpha);
        double term2 = denom / (alpha - x);
        double term3 = pow(x - alpha - alpha * log(x / alpha), -1.5);
        double term23 = (x < alpha) ? term2 - term3 : term2 + term3;
        double term1 = log(x / alpha) * term23
            - sqrt(2.0 / alpha) * (alpha + x) / ((alpha - x) * (alpha - x));
        double stirling = 1.0 + 1.0 / (12.0 * alpha) * (1.0 + 1.0 / (24.0 * alpha));
        double numer = x * term1;
        return -stirling * numer / denom;
    }
    double u = log(x / alpha);
    double v = log(alpha);
    double coef_v[8];
    for (int i = 0; i < 8; ++i) coef_v[i] = VA_COEF_UV[0][i] + u * (VA_COEF_UV[1][i] + u * VA_COEF_UV[2][i]);
    double p = coef_v[0] + v * (coef_v[1] + v * (coef_v[2] + v * coef_v[3]));
    double q = coef_v[4] + v * (coef_v[5] + v * (coef_v[6] + v * coef_v[7]));
    return exp(p / q);
}

// The elementwise ops, numbered as SpecialOp in src/special/cuda.rs.
#define VA_OP_LGAMMA 0
#define VA_OP_DIGAMMA 1
#define VA_OP_TRIGAMMA 2
#define VA_OP_TETRAGAMMA 3
#define VA_OP_SOFTPLUS 4
#define VA_OP_LOG1P 5

VA_FN double va_special(int op, double x) {
    switch (op) {
        case VA_OP_LGAMMA: return va_lgamma(x);
        case VA_OP_DIGAMMA: return va_digamma(x);
        case VA_OP_TRIGAMMA: return va_trigamma(x);
        case VA_OP_TETRAGAMMA: return va_tetragamma(x);
        case VA_OP_SOFTPLUS: return va_softplus(x);
        case VA_OP_LOG1P: return log1p(x);
        default: return va_nan();
    }
}

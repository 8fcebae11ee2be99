// Integer-code linear microkernels (AVX-512 VNNI) for IREE custom CPU dispatches.
//
// y[m, n] = sum_p sum_g scale[p, n, g] * sum_{k in g} q[p, n, k] * x[m, k] for integer codes q
// stored as unsigned W-bit codes c = q + z (W = 2, 4 or 8; zero code z = 1, 8, 128), computed
// as sum(c * x) - z * sum(x), so the codes are the u8 operand of `vpdpbusd` and quantized
// activations the s8 operand. W = 2 holds a ternary weight (q = t in {-1, 0, 1}) or a base-4
// digit ({-1, 0, 1, 2}), W = 4 a code of up to 4 bits, W = 8 one of up to 8 bits. Every width
// does the same four vpdpbusd per digit for 16 rows x 16 columns: W only sets the bytes read.
// Two numerics:
//   INT8    (BitNet b1.58): x rounded per token to 127 levels of its absmax (step = amax/127).
//   FIXED32 (exact): x put on a per-token grid 2^-e with |x * 2^e| < 2^30 and split into four
//           balanced signed base-256 digits; integer accumulation is exact, so the result is as
//           accurate as an f64 dot product rounded to f32 (values below amax * 2^-31 are rounded
//           away; a NaN or Inf in x makes the whole row NaN). One caveat for W = 8: a digit's
//           sum over a scale group exceeds f32's 24-bit integers beyond 1024 columns per group,
//           and is then rounded once (relative 2^-24) before the digits are combined.
// The torch-mlir side (kernels/vnni.py) lays the weights out offline; the IREE
// side (backend/custom_dispatch.py) declares these functions and dispatches them, one workgroup
// per `rows_per_wg` output rows. Entry points: linear_w{2,4,8}_{int8,fixed32}[_decode]_wg.
//
// Build (the Makefile does this at install time; IREE links the object into its embedded ELF
// executables, so: freestanding, no libc, no TLS, no globals):
//   python -m ziglang cc -target x86_64-freestanding -ffreestanding -fno-builtin -O3 -g0 \
//     -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512vbmi -c vnni_linear.c
// The object has no run-time CPU dispatch: it needs those five features on the host.
//
// Every memref argument arrives as its MLIR descriptor (base, aligned, offset, size, stride)
// for a 1-D memref; only `aligned + offset` is used.
//
// Weight layout wb[p][n1][kb][W/2][64] bytes: n1 = 16-row block, kb = 16-column block, split
// into W/2 vectors of 64 bytes, each 16 rows x 32/W columns. In vector b, byte 4*j + kk (j = row
// within the block, kk = 0..3) holds in bits W*i .. W*i+W-1 the code of (row 16*n1 + j, column
// 16*kb + 4*(b*8/W + i) + kk). So step s = 0..3 of a 16-column block is (vector s/(8/W) >> W*(s
// mod 8/W)) & (2^W - 1): in 32-bit lane j, the four codes of row j for columns 16kb+4s ..
// 16kb+4s+3, the u8 operand of vpdpbusd against those four activations broadcast. Rows are padded
// to Np (multiple of 16) and columns to Kp (multiple of 16) with the zero code.
// Scales sc[p][n1][g][16]: the scale of (row 16*n1 + lane, group g); tensor and channel scales
// are one group (G = 0, Gn = 1), group scales have G columns per group (a multiple of 16).
#include <immintrin.h>
#include <stdint.h>
#include <stddef.h>

#define MEMREF1(T, name) T *name##_base, T *name, int64_t name##_off, int64_t name##_size, int64_t name##_stride
#define INLINE static inline __attribute__((always_inline))

// Scale groups per row the per-group activation sums have room for.
#define MAX_GROUPS 256
// Longest padded row the decode entry points quantize into their stack buffer (FIXED32 keeps
// four digit planes: 64 KiB).
#define DECODE_MAX_KP 16384

// Step s (0..3) of 16-column block kb of a row block's codes w: 16 rows x 4 columns, as bytes.
INLINE __m512i step_codes(const uint8_t *w, int64_t kb, int s, int W) {
  const int per = 8 / W;  // steps per 64-byte vector
  __m512i v = _mm512_loadu_si512(w + (kb * (W / 2) + s / per) * 64);
  if (W == 8) return v;
  return _mm512_and_si512(_mm512_srli_epi16(v, W * (s % per)), _mm512_set1_epi8((char)((1 << W) - 1)));
}

INLINE int32_t zero_code(int W) { return W == 2 ? 1 : W == 4 ? 8 : 128; }

// Bytes of codes per 16-row block.
INLINE int64_t row_block_bytes(int64_t KB, int W) { return KB * 32 * W; }

// Per-group sums of one row of quantized activations (the sum(x) of sum(c * x) - z sum(x)).
static void group_sums(const int8_t *x, int64_t KB, int64_t kbg, int32_t *gsum) {
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t g0 = 0, gi = 0; g0 < KB; g0 += kbg, ++gi) {
    int64_t g1 = g0 + kbg < KB ? g0 + kbg : KB;
    __m512i s = _mm512_setzero_si512();
    int64_t kb = g0;
    for (; kb + 4 <= g1; kb += 4) s = _mm512_dpbusd_epi32(s, ones, _mm512_loadu_si512(x + kb * 16));
    int32_t t = _mm512_reduce_add_epi32(s);
    for (; kb < g1; ++kb)
      for (int r = 0; r < 16; ++r) t += x[kb * 16 + r];
    gsum[gi] = t;
  }
}

// Stores 16 results, masked to the rows below N.
static inline void store_rows(float *y, int64_t n, int64_t N, __m512 v) {
  int64_t r = N - n;
  if (r >= 16) _mm512_storeu_ps(y + n, v);
  else if (r > 0) _mm512_mask_storeu_ps(y + n, (__mmask16)((1u << r) - 1), v);
}

// One 16-column block kb of two 16-row blocks (codes w0, w1) against four int8 rows (four
// tokens, or the four digit planes of one token): accumulators a0..a3 and b0..b3, 8
// independent vpdpbusd chains. Used by the INT8 four-token path and by FIXED32.
#define FOUR_ROWS_TWO_BLOCKS(X0, X1, X2, X3)                                            \
  for (int s = 0; s < 4; ++s) {                                                        \
    __m512i c0 = step_codes(w0, kb, s, W), c1 = step_codes(w1, kb, s, W);              \
    __m512i q0 = _mm512_set1_epi32(((const int32_t *)(X0 + kb * 16))[s]);              \
    __m512i q1 = _mm512_set1_epi32(((const int32_t *)(X1 + kb * 16))[s]);              \
    __m512i q2 = _mm512_set1_epi32(((const int32_t *)(X2 + kb * 16))[s]);              \
    __m512i q3 = _mm512_set1_epi32(((const int32_t *)(X3 + kb * 16))[s]);              \
    a0 = _mm512_dpbusd_epi32(a0, c0, q0); b0 = _mm512_dpbusd_epi32(b0, c1, q0);        \
    a1 = _mm512_dpbusd_epi32(a1, c0, q1); b1 = _mm512_dpbusd_epi32(b1, c1, q1);        \
    a2 = _mm512_dpbusd_epi32(a2, c0, q2); b2 = _mm512_dpbusd_epi32(b2, c1, q2);        \
    a3 = _mm512_dpbusd_epi32(a3, c0, q3); b3 = _mm512_dpbusd_epi32(b3, c1, q3);        \
  }

// INT8, four tokens at a time (prefill): each unpacked weight vector serves four activation rows.
// Two 16-row blocks per step give 8 independent vpdpbusd chains. Returns the rows done.
INLINE int64_t int8_four_tokens(const int8_t *xq, const float *xs, const uint8_t *wb, const float *sc,
                                float *y, int64_t M, int64_t N, int64_t Kp, int64_t P, int64_t G,
                                int64_t Gn, int64_t Np, int64_t row0, int64_t row1, int W) {
  const int64_t KB = Kp / 16;
  const int64_t kbg = G ? G / 16 : KB;
  const int64_t rb = row_block_bytes(KB, W);
  const int32_t z = zero_code(W);
  int32_t gsum[4][MAX_GROUPS];
  int64_t m0 = 0;
  for (; m0 + 4 <= M; m0 += 4) {
    for (int q = 0; q < 4; ++q) group_sums(xq + (m0 + q) * Kp, KB, kbg, gsum[q]);
    const int8_t *x0 = xq + m0 * Kp, *x1 = x0 + Kp, *x2 = x1 + Kp, *x3 = x2 + Kp;
    for (int64_t n1 = row0 / 16; n1 < row1 / 16; n1 += 2) {
      const int two = (n1 + 2 <= row1 / 16);
      __m512 ya0 = _mm512_setzero_ps(), ya1 = ya0, ya2 = ya0, ya3 = ya0;
      __m512 yb0 = ya0, yb1 = ya0, yb2 = ya0, yb3 = ya0;
      for (int64_t p = 0; p < P; ++p) {
        const uint8_t *w0 = wb + (p * (Np / 16) + n1) * rb;
        const uint8_t *w1 = two ? w0 + rb : w0;
        const float *s0p = sc + (p * Np + n1 * 16) * Gn;
        const float *s1p = two ? s0p + 16 * Gn : s0p;
        for (int64_t g0 = 0, gi = 0; g0 < KB; g0 += kbg, ++gi) {
          int64_t g1 = g0 + kbg < KB ? g0 + kbg : KB;
          __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
          __m512i b0 = a0, b1 = a0, b2 = a0, b3 = a0;
          for (int64_t kb = g0; kb < g1; ++kb) {
            FOUR_ROWS_TWO_BLOCKS(x0, x1, x2, x3)
          }
          __m512 sa = _mm512_loadu_ps(s0p + gi * 16), sb = _mm512_loadu_ps(s1p + gi * 16);
#define ACC(Y, A, S, Q) Y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(A, _mm512_set1_epi32(z * gsum[Q][gi]))), S, Y);
          ACC(ya0, a0, sa, 0) ACC(ya1, a1, sa, 1) ACC(ya2, a2, sa, 2) ACC(ya3, a3, sa, 3)
          ACC(yb0, b0, sb, 0) ACC(yb1, b1, sb, 1) ACC(yb2, b2, sb, 2) ACC(yb3, b3, sb, 3)
#undef ACC
        }
      }
      const int64_t n = n1 * 16;
      __m512 ya[4] = {ya0, ya1, ya2, ya3}, yb[4] = {yb0, yb1, yb2, yb3};
      for (int q = 0; q < 4; ++q) {
        __m512 step = _mm512_set1_ps(xs[m0 + q]);
        float *yr = y + (m0 + q) * N;
        store_rows(yr, n, N, _mm512_mul_ps(ya[q], step));
        if (two) store_rows(yr, n + 16, N, _mm512_mul_ps(yb[q], step));
      }
    }
  }
  return m0;
}

// INT8 numerics. xq: int8 [M][Kp] (zero padded), xs: f32 [M] the activation step (amax/127);
// y: f32 [M][N]. Rows [row0, row1) for all M.
INLINE void int8_rows(const int8_t *xq, const float *xs, const uint8_t *wb, const float *sc, float *y,
                      int64_t M, int64_t N, int64_t Kp, int64_t P, int64_t G, int64_t Gn, int64_t Np,
                      int64_t row0, int64_t row1, int W) {
  const int64_t KB = Kp / 16;
  const int64_t kbg = G ? G / 16 : KB;  // 16-column blocks per scale group
  const int64_t rb = row_block_bytes(KB, W);
  const int32_t z = zero_code(W);
  int32_t gsum[MAX_GROUPS];
  int64_t m = M >= 4 ? int8_four_tokens(xq, xs, wb, sc, y, M, N, Kp, P, G, Gn, Np, row0, row1, W) : 0;
  for (; m < M; ++m) {
    const int8_t *x = xq + m * Kp;
    const __m512 step = _mm512_set1_ps(xs[m]);
    group_sums(x, KB, kbg, gsum);
    // two 16-row blocks at a time (the second one repeats the first past the last block):
    // 4 independent vpdpbusd chains
    for (int64_t n1 = row0 / 16; n1 < row1 / 16; n1 += 2) {
      const int two = (n1 + 2 <= row1 / 16);
      __m512 y0 = _mm512_setzero_ps(), y1 = y0;
      for (int64_t p = 0; p < P; ++p) {
        const uint8_t *w0 = wb + (p * (Np / 16) + n1) * rb;
        const uint8_t *w1 = two ? w0 + rb : w0;
        const float *s0p = sc + (p * Np + n1 * 16) * Gn;
        const float *s1p = two ? s0p + 16 * Gn : s0p;
        for (int64_t g0 = 0, gi = 0; g0 < KB; g0 += kbg, ++gi) {
          int64_t g1 = g0 + kbg < KB ? g0 + kbg : KB;
          __m512i a0 = _mm512_setzero_si512(), a1 = a0, b0 = a0, b1 = a0;
          for (int64_t kb = g0; kb < g1; ++kb) {
            const int32_t *x4 = (const int32_t *)(x + kb * 16);
            __m512i x0 = _mm512_set1_epi32(x4[0]), x1 = _mm512_set1_epi32(x4[1]);
            __m512i x2 = _mm512_set1_epi32(x4[2]), x3 = _mm512_set1_epi32(x4[3]);
            a0 = _mm512_dpbusd_epi32(a0, step_codes(w0, kb, 0, W), x0);
            a1 = _mm512_dpbusd_epi32(a1, step_codes(w0, kb, 1, W), x1);
            b0 = _mm512_dpbusd_epi32(b0, step_codes(w1, kb, 0, W), x0);
            b1 = _mm512_dpbusd_epi32(b1, step_codes(w1, kb, 1, W), x1);
            a0 = _mm512_dpbusd_epi32(a0, step_codes(w0, kb, 2, W), x2);
            a1 = _mm512_dpbusd_epi32(a1, step_codes(w0, kb, 3, W), x3);
            b0 = _mm512_dpbusd_epi32(b0, step_codes(w1, kb, 2, W), x2);
            b1 = _mm512_dpbusd_epi32(b1, step_codes(w1, kb, 3, W), x3);
          }
          __m512i gs = _mm512_set1_epi32(z * gsum[gi]);
          __m512i ra = _mm512_sub_epi32(_mm512_add_epi32(a0, a1), gs);
          __m512i rb2 = _mm512_sub_epi32(_mm512_add_epi32(b0, b1), gs);
          y0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ra), _mm512_loadu_ps(s0p + gi * 16), y0);
          y1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(rb2), _mm512_loadu_ps(s1p + gi * 16), y1);
        }
      }
      store_rows(y + m * N, n1 * 16, N, _mm512_mul_ps(y0, step));
      if (two) store_rows(y + m * N, n1 * 16 + 16, N, _mm512_mul_ps(y1, step));
    }
  }
}

// FIXED32 numerics. xq: int8 [M][4][Kp], the balanced base-256 digits of x * 2^e (d = 0 least
// significant); xs: f32 [M] = 2^-e (NaN if x had a NaN or Inf). y = xs * sum_{p,g} scale *
// sum_d 256^d (acc_d - z gsum_d).
INLINE void fixed32_rows(const int8_t *xq, const float *xs, const uint8_t *wb, const float *sc, float *y,
                         int64_t M, int64_t N, int64_t Kp, int64_t P, int64_t G, int64_t Gn, int64_t Np,
                         int64_t row0, int64_t row1, int W) {
  const int64_t KB = Kp / 16;
  const int64_t kbg = G ? G / 16 : KB;
  const int64_t rb = row_block_bytes(KB, W);
  const int32_t z = zero_code(W);
  int32_t gsum[4][MAX_GROUPS];
  for (int64_t m = 0; m < M; ++m) {
    const int8_t *x = xq + m * 4 * Kp;
    const __m512 unit = _mm512_set1_ps(xs[m]);
    for (int d = 0; d < 4; ++d) group_sums(x + d * Kp, KB, kbg, gsum[d]);
    const int8_t *x0p = x, *x1p = x + Kp, *x2p = x + 2 * Kp, *x3p = x + 3 * Kp;
    for (int64_t n1 = row0 / 16; n1 < row1 / 16; n1 += 2) {
      const int two = (n1 + 2 <= row1 / 16);
      __m512 y0 = _mm512_setzero_ps(), y1 = y0;
      for (int64_t p = 0; p < P; ++p) {
        const uint8_t *w0 = wb + (p * (Np / 16) + n1) * rb;
        const uint8_t *w1 = two ? w0 + rb : w0;
        const float *s0p = sc + (p * Np + n1 * 16) * Gn;
        const float *s1p = two ? s0p + 16 * Gn : s0p;
        for (int64_t g0 = 0, gi = 0; g0 < KB; g0 += kbg, ++gi) {
          int64_t g1 = g0 + kbg < KB ? g0 + kbg : KB;
          __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
          __m512i b0 = a0, b1 = a0, b2 = a0, b3 = a0;
          for (int64_t kb = g0; kb < g1; ++kb) {
            FOUR_ROWS_TWO_BLOCKS(x0p, x1p, x2p, x3p)
          }
          // A digit's sum over a group is at most 128 * 2^(W-1) * G in magnitude: exact in f32
          // for groups of up to 2^(17-W) columns (see the header for W = 8), so weighting the
          // digits is the only rounding before the scale.
#define DIGIT(A, D) _mm512_cvtepi32_ps(_mm512_sub_epi32(A, _mm512_set1_epi32(z * gsum[D][gi])))
#define COMBINE(A0, A1, A2, A3)                                                         \
          _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(DIGIT(A0, 0),                        \
            _mm512_mul_ps(DIGIT(A1, 1), _mm512_set1_ps(256.0f))),                        \
            _mm512_mul_ps(DIGIT(A2, 2), _mm512_set1_ps(65536.0f))),                      \
            _mm512_mul_ps(DIGIT(A3, 3), _mm512_set1_ps(16777216.0f)))
          y0 = _mm512_fmadd_ps(COMBINE(a0, a1, a2, a3), _mm512_loadu_ps(s0p + gi * 16), y0);
          y1 = _mm512_fmadd_ps(COMBINE(b0, b1, b2, b3), _mm512_loadu_ps(s1p + gi * 16), y1);
#undef COMBINE
#undef DIGIT
        }
      }
      const int64_t n = n1 * 16;
      store_rows(y + m * N, n, N, _mm512_mul_ps(y0, unit));
      if (two) store_rows(y + m * N, n + 16, N, _mm512_mul_ps(y1, unit));
    }
  }
}

// ------------------------------------------------------------------------------------------
// Decode (M == 1, Kp <= DECODE_MAX_KP): the f32 activations are quantized by every workgroup
// itself into a stack buffer (two passes over K floats, well under a microsecond), so a decode
// linear is one dispatch instead of a quantization dispatch + kernel.

static inline float amax_f32(const float *x, int64_t K) {
  __m512 m = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + k)));
  if (k < K) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_maskz_loadu_ps((__mmask16)((1u << (K - k)) - 1), x + k)));
  return _mm512_reduce_max_ps(m);
}

// The columns of block [k, k + 16) that lie below K.
static inline __mmask16 columns_below(int64_t k, int64_t K) {
  return k + 16 <= K ? (__mmask16)0xFFFF : (k < K ? (__mmask16)((1u << (K - k)) - 1) : 0);
}

// x [K] -> xq [Kp] int8, returns the step: q = round_even(x / step), step = amax / 127,
// bit-identical to the linalg and numpy models: the quotient is x * (1/step) corrected once
// with an fma (Markstein), which rounds correctly without a division per element.
static float quantize_int8(const float *x, int64_t K, int64_t Kp, int8_t *xq) {
  float amax = amax_f32(x, K);
  if (amax < 1e-30f) amax = 1e-30f;
  const float step_s = amax / 127.0f;
  const __m512 step = _mm512_set1_ps(step_s), inv = _mm512_set1_ps(1.0f / step_s);
  const __m512 hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
  for (int64_t k = 0; k < Kp; k += 16) {
    __m512 v = _mm512_maskz_loadu_ps(columns_below(k, K), x + k);
    __m512 q = _mm512_mul_ps(v, inv);
    q = _mm512_fmadd_ps(_mm512_fnmadd_ps(q, step, v), inv, q);
    q = _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm512_max_ps(_mm512_min_ps(q, hi), lo);
    _mm_store_si128((__m128i *)(xq + k), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(q)));
  }
  return step_s;
}

// x [K] -> xq [4][Kp], its four balanced base-256 digit planes; returns 2^-e (NaN for a
// non-finite x).
static float quantize_fixed32(const float *x, int64_t K, int64_t Kp, int8_t *xq) {
  float amax = amax_f32(x, K);
  // e = 156 - biased exponent of amax, so amax * 2^e < 2^30 (clamped to keep 2^±e normal).
  union { float f; int32_t i; } a = {amax};
  int32_t e = 156 - ((a.i >> 23) & 255);
  if (e < -120) e = -120;
  if (e > 120) e = 120;
  union { int32_t i; float f; } pow_e = {(e + 127) << 23}, pow_minus_e = {(127 - e) << 23};
  const __m512 scale = _mm512_set1_ps(pow_e.f);
  // Adding 0x80808080 and flipping each byte's top bit turns an int32 into its four balanced
  // signed base-256 digits, one per byte.
  const __m512i bias = _mm512_set1_epi32((int32_t)0x80808080u);
  // byte permutation: 16 int32 (4 digit bytes each) -> 4 planes of 16 bytes (digit-major)
  const __m512i planes = _mm512_set_epi8(63, 59, 55, 51, 47, 43, 39, 35, 31, 27, 23, 19, 15, 11, 7, 3,
                                         62, 58, 54, 50, 46, 42, 38, 34, 30, 26, 22, 18, 14, 10, 6, 2,
                                         61, 57, 53, 49, 45, 41, 37, 33, 29, 25, 21, 17, 13, 9, 5, 1,
                                         60, 56, 52, 48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0);
  for (int64_t k = 0; k < Kp; k += 16) {
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(columns_below(k, K), x + k), scale);
    __m512i vi = _mm512_cvtps_epi32(_mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m512i digits = _mm512_xor_si512(_mm512_add_epi32(vi, bias), bias);
    __m512i pl = _mm512_permutexvar_epi8(planes, digits);
    _mm_store_si128((__m128i *)(xq + k), _mm512_extracti32x4_epi32(pl, 0));
    _mm_store_si128((__m128i *)(xq + Kp + k), _mm512_extracti32x4_epi32(pl, 1));
    _mm_store_si128((__m128i *)(xq + 2 * Kp + k), _mm512_extracti32x4_epi32(pl, 2));
    _mm_store_si128((__m128i *)(xq + 3 * Kp + k), _mm512_extracti32x4_epi32(pl, 3));
  }
  return (amax < __builtin_inff()) ? pow_minus_e.f : __builtin_nanf("");
}

INLINE int64_t rows_end(int64_t wg, int64_t rows_per_wg, int64_t Np) {
  const int64_t row1 = (wg + 1) * rows_per_wg;
  return row1 < Np ? row1 : Np;
}

// ------------------------------------------------------------------------------------------
// Entry points, one set per code width W. Prefill (*_wg): quantized activations xq and their
// unit xs from the linalg prologue. Decode (*_decode_wg): the f32 row x.

#define ENTRY_POINTS(W)                                                                              \
  void linear_w##W##_int8_wg(MEMREF1(const int8_t, xq), MEMREF1(const float, xs),                     \
                             MEMREF1(const uint8_t, wb), MEMREF1(const float, sc), MEMREF1(float, y), \
                             int64_t M, int64_t N, int64_t Kp, int64_t P, int64_t G, int64_t Gn,      \
                             int64_t Np, int64_t wg, int64_t rows_per_wg) {                           \
    int8_rows(xq + xq_off, xs + xs_off, wb + wb_off, sc + sc_off, y + y_off, M, N, Kp, P, G, Gn, Np,  \
              wg * rows_per_wg, rows_end(wg, rows_per_wg, Np), W);                                    \
  }                                                                                                   \
  void linear_w##W##_fixed32_wg(MEMREF1(const int8_t, xq), MEMREF1(const float, xs),                  \
                                MEMREF1(const uint8_t, wb), MEMREF1(const float, sc), MEMREF1(float, y), \
                                int64_t M, int64_t N, int64_t Kp, int64_t P, int64_t G, int64_t Gn,   \
                                int64_t Np, int64_t wg, int64_t rows_per_wg) {                        \
    fixed32_rows(xq + xq_off, xs + xs_off, wb + wb_off, sc + sc_off, y + y_off, M, N, Kp, P, G, Gn,   \
                 Np, wg * rows_per_wg, rows_end(wg, rows_per_wg, Np), W);                             \
  }                                                                                                   \
  void linear_w##W##_int8_decode_wg(MEMREF1(const float, x), MEMREF1(const uint8_t, wb),              \
                                    MEMREF1(const float, sc), MEMREF1(float, y), int64_t N, int64_t K, \
                                    int64_t Kp, int64_t P, int64_t G, int64_t Gn, int64_t Np,         \
                                    int64_t wg, int64_t rows_per_wg) {                                \
    int8_t xq[DECODE_MAX_KP] __attribute__((aligned(64)));                                            \
    float step = quantize_int8(x + x_off, K, Kp, xq);                                                 \
    int8_rows(xq, &step, wb + wb_off, sc + sc_off, y + y_off, 1, N, Kp, P, G, Gn, Np,                 \
              wg * rows_per_wg, rows_end(wg, rows_per_wg, Np), W);                                    \
  }                                                                                                   \
  void linear_w##W##_fixed32_decode_wg(MEMREF1(const float, x), MEMREF1(const uint8_t, wb),           \
                                       MEMREF1(const float, sc), MEMREF1(float, y), int64_t N,        \
                                       int64_t K, int64_t Kp, int64_t P, int64_t G, int64_t Gn,       \
                                       int64_t Np, int64_t wg, int64_t rows_per_wg) {                 \
    int8_t xq[4 * DECODE_MAX_KP] __attribute__((aligned(64)));                                        \
    float unit = quantize_fixed32(x + x_off, K, Kp, xq);                                              \
    fixed32_rows(xq, &unit, wb + wb_off, sc + sc_off, y + y_off, 1, N, Kp, P, G, Gn, Np,              \
                 wg * rows_per_wg, rows_end(wg, rows_per_wg, Np), W);                                 \
  }

ENTRY_POINTS(2)
ENTRY_POINTS(4)
ENTRY_POINTS(8)

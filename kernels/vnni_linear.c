// Integer-code linear microkernels (AVX-512 VNNI, or AVX2) for IREE custom CPU dispatches.
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
// per `rows_per_wg` output rows. Entry points: linear_w{2,4,8,8s}_{int8,fixed32}[_decode]_wg.
//
// Two builds of this one source, the same entry points and results bit for bit (integer sums
// are exact; the f32 steps are the same operations in the same order): the backend links the
// one the host can run (kernels/contract.py). The Makefile builds both at install time; IREE
// links the object into its embedded ELF executables, so: freestanding, no libc, no TLS, no
// globals:
//   python -m ziglang cc -target x86_64-freestanding -ffreestanding -fno-builtin -O3 -g0 \
//     -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512vbmi -c vnni_linear.c  (vnni_linear.o)
//   python -m ziglang cc ... -mavx2 -mfma -c vnni_linear.c -o vnni_linear_avx2.o
// AVX2 has no vpdpbusd: `vpmaddubsw` (u8 x s8 pairs into saturating s16) and `vpmaddwd` against
// ones take its place. Codes of up to 4 bits cannot saturate (2 * 15 * 128 < 2^15); 8-bit codes
// are split into their two 4-bit halves, the high one weighted by 16 in `vpmaddwd`. It is the
// path for CPUs without AVX-512 (AMD Zen 1-3, most client CPUs).
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

// The stored code of a zero weight at width W (c = q + z).
INLINE int32_t zero_code(int W) { return W == 2 ? 1 : W == 4 ? 8 : 128; }

// ------------------------------------------------------------------------------------------
// The vector layer: vint holds 16 int32 lanes (64 bytes: one 16-row vector of codes), vflt 16
// f32 lanes (16 output rows). One zmm register on AVX-512, two ymm registers on AVX2.

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__AVX512VBMI__)

typedef __m512i vint;
typedef __m512 vflt;

INLINE vint vi_load(const void *p) { return _mm512_loadu_si512(p); }
INLINE vint vi_zero(void) { return _mm512_setzero_si512(); }
INLINE vint vi_set1(int32_t v) { return _mm512_set1_epi32(v); }
INLINE vint vi_set1_8(char v) { return _mm512_set1_epi8(v); }
INLINE vint vi_add(vint a, vint b) { return _mm512_add_epi32(a, b); }
INLINE vint vi_sub(vint a, vint b) { return _mm512_sub_epi32(a, b); }
INLINE vint vi_and(vint a, vint b) { return _mm512_and_si512(a, b); }
INLINE vint vi_xor(vint a, vint b) { return _mm512_xor_si512(a, b); }
INLINE vint vi_srli16(vint a, int n) { return _mm512_srli_epi16(a, n); }
// acc + in each lane the sum of its four u8 codes times the four s8 activations of x.
INLINE vint vi_dot(vint acc, vint codes, vint x, int W) { (void)W; return _mm512_dpbusd_epi32(acc, codes, x); }
INLINE int32_t vi_sum(vint a) { return _mm512_reduce_add_epi32(a); }
// Partial dot products (see the AVX2 layer): int32 lanes here, so a partial never needs widening
// before the end of a scale group.
typedef vint vpart;
#define ROW_BLOCKS 2  // 16-row blocks per pass: 32 zmm registers hold FIXED32's 8 accumulators twice over
INLINE int64_t part_steps(int W) { (void)W; return INT64_MAX; }
INLINE vpart vp_dot(vpart part, vint codes, vint x, int W, int sym) { (void)sym; return vi_dot(part, codes, x, W); }
INLINE vint vp_widen(vint acc, vpart part, int W) { (void)W; return _mm512_add_epi32(acc, part); }
// The zero code vp_dot's sums are taken against: sum(c x) - z sum(x).
INLINE int32_t vp_zero_point(int W, int sym) { (void)sym; return zero_code(W); }

INLINE vflt vf_zero(void) { return _mm512_setzero_ps(); }
INLINE vflt vf_set1(float v) { return _mm512_set1_ps(v); }
INLINE vflt vf_load(const float *p) { return _mm512_loadu_ps(p); }
INLINE vflt vf_from_int(vint a) { return _mm512_cvtepi32_ps(a); }
INLINE vflt vf_add(vflt a, vflt b) { return _mm512_add_ps(a, b); }
INLINE vflt vf_mul(vflt a, vflt b) { return _mm512_mul_ps(a, b); }
INLINE vflt vf_fmadd(vflt a, vflt b, vflt c) { return _mm512_fmadd_ps(a, b, c); }
INLINE vflt vf_fnmadd(vflt a, vflt b, vflt c) { return _mm512_fnmadd_ps(a, b, c); }
INLINE vflt vf_min(vflt a, vflt b) { return _mm512_min_ps(a, b); }
INLINE vflt vf_max(vflt a, vflt b) { return _mm512_max_ps(a, b); }
INLINE vflt vf_abs(vflt a) { return _mm512_abs_ps(a); }
INLINE vflt vf_round(vflt a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
INLINE float vf_reduce_max(vflt a) { return _mm512_reduce_max_ps(a); }
// x[k .. k + 16), zero at and beyond K.
INLINE vflt vf_load_below(const float *x, int64_t k, int64_t K) {
  return _mm512_maskz_loadu_ps(k + 16 <= K ? (__mmask16)0xFFFF : (k < K ? (__mmask16)((1u << (K - k)) - 1) : 0), x + k);
}
// Stores 16 results, masked to the rows below N.
INLINE void store_rows(float *y, int64_t n, int64_t N, vflt v) {
  int64_t r = N - n;
  if (r >= 16) _mm512_storeu_ps(y + n, v);
  else if (r > 0) _mm512_mask_storeu_ps(y + n, (__mmask16)((1u << r) - 1), v);
}
// 16 integral values in [-127, 127] as int8 at dst.
INLINE void store_int8(int8_t *dst, vflt q) { _mm_storeu_si128((__m128i *)dst, _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(q))); }
// 16 int32 of four digit bytes each (columns k .. k + 16) as four planes of 16 bytes, xq[d][Kp].
INLINE void store_digit_planes(int8_t *xq, int64_t Kp, int64_t k, vint digits) {
  // byte permutation: 16 int32 (4 digit bytes each) -> 4 planes of 16 bytes (digit-major)
  const __m512i planes = _mm512_set_epi8(63, 59, 55, 51, 47, 43, 39, 35, 31, 27, 23, 19, 15, 11, 7, 3,
                                         62, 58, 54, 50, 46, 42, 38, 34, 30, 26, 22, 18, 14, 10, 6, 2,
                                         61, 57, 53, 49, 45, 41, 37, 33, 29, 25, 21, 17, 13, 9, 5, 1,
                                         60, 56, 52, 48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0);
  __m512i pl = _mm512_permutexvar_epi8(planes, digits);
  _mm_storeu_si128((__m128i *)(xq + k), _mm512_extracti32x4_epi32(pl, 0));
  _mm_storeu_si128((__m128i *)(xq + Kp + k), _mm512_extracti32x4_epi32(pl, 1));
  _mm_storeu_si128((__m128i *)(xq + 2 * Kp + k), _mm512_extracti32x4_epi32(pl, 2));
  _mm_storeu_si128((__m128i *)(xq + 3 * Kp + k), _mm512_extracti32x4_epi32(pl, 3));
}
INLINE vint vi_from_flt(vflt a) { return _mm512_cvtps_epi32(a); }

#elif defined(__AVX2__) && defined(__FMA__)

typedef struct { __m256i lo, hi; } vint;  // lanes 0-7 (rows 0-7 of a block), 8-15
typedef struct { __m256 lo, hi; } vflt;

#define VI2(expr_lo, expr_hi) do { vint r_; r_.lo = (expr_lo); r_.hi = (expr_hi); return r_; } while (0)
#define VF2(expr_lo, expr_hi) do { vflt r_; r_.lo = (expr_lo); r_.hi = (expr_hi); return r_; } while (0)

INLINE vint vi_load(const void *p) { VI2(_mm256_loadu_si256((const __m256i *)p), _mm256_loadu_si256((const __m256i *)p + 1)); }
INLINE vint vi_zero(void) { VI2(_mm256_setzero_si256(), _mm256_setzero_si256()); }
INLINE vint vi_set1(int32_t v) { VI2(_mm256_set1_epi32(v), _mm256_set1_epi32(v)); }
INLINE vint vi_set1_8(char v) { VI2(_mm256_set1_epi8(v), _mm256_set1_epi8(v)); }
INLINE vint vi_add(vint a, vint b) { VI2(_mm256_add_epi32(a.lo, b.lo), _mm256_add_epi32(a.hi, b.hi)); }
INLINE vint vi_sub(vint a, vint b) { VI2(_mm256_sub_epi32(a.lo, b.lo), _mm256_sub_epi32(a.hi, b.hi)); }
INLINE vint vi_and(vint a, vint b) { VI2(_mm256_and_si256(a.lo, b.lo), _mm256_and_si256(a.hi, b.hi)); }
INLINE vint vi_xor(vint a, vint b) { VI2(_mm256_xor_si256(a.lo, b.lo), _mm256_xor_si256(a.hi, b.hi)); }
INLINE vint vi_srli16(vint a, int n) { VI2(_mm256_srli_epi16(a.lo, n), _mm256_srli_epi16(a.hi, n)); }
// u8 codes of at most 4 bits times s8 x: vpmaddubsw's pair sums stay below 2^15.
INLINE __m256i dot_narrow(__m256i acc, __m256i codes, __m256i x, __m256i weight) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(codes, x), weight));
}
// acc + in each lane the sum of its four u8 codes times the four s8 activations of x.
INLINE vint vi_dot(vint acc, vint codes, vint x, int W) {
  const __m256i ones = _mm256_set1_epi16(1);
  if (W < 8) VI2(dot_narrow(acc.lo, codes.lo, x.lo, ones), dot_narrow(acc.hi, codes.hi, x.hi, ones));
  const __m256i nibble = _mm256_set1_epi8(15), sixteen = _mm256_set1_epi16(16);
  __m256i lo = dot_narrow(acc.lo, _mm256_and_si256(codes.lo, nibble), x.lo, ones);
  __m256i hi = dot_narrow(acc.hi, _mm256_and_si256(codes.hi, nibble), x.hi, ones);
  lo = dot_narrow(lo, _mm256_and_si256(_mm256_srli_epi16(codes.lo, 4), nibble), x.lo, sixteen);
  hi = dot_narrow(hi, _mm256_and_si256(_mm256_srli_epi16(codes.hi, 4), nibble), x.hi, sixteen);
  VI2(lo, hi);
}
// Partial dot products: for codes of up to 4 bits, vpmaddubsw's int16 pair sums are added up in
// int16 for `part_steps` steps (|sum| < 2^15) and widened once with vpmaddwd, instead of a
// vpmaddwd and an add per step. 8-bit codes accumulate in int32 (vi_dot) from the start.
typedef vint vpart;
#define ROW_BLOCKS 1  // 16-row blocks per pass: FIXED32's 4 digits x 2 halves fill 8 of 16 ymm registers
INLINE int64_t part_steps(int W) { return W < 8 ? 32767 / (2 * 128 * ((1 << W) - 1)) : INT64_MAX; }
INLINE vpart vp_dot(vpart part, vint codes, vint x, int W, int sym) {
  if (W == 8 && sym) {
    // Symmetric 8-bit codes: q = c ^ 0x80 is in [-127, 127], so |x| (u8, at most 128) times
    // q sign(x) (s8) gives q x with pair sums below 2^15: one vpmaddubsw instead of two, and
    // sum(q x) directly (zero point 0).
    const __m256i flip = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);
    VI2(_mm256_add_epi32(part.lo, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(x.lo), _mm256_sign_epi8(_mm256_xor_si256(codes.lo, flip), x.lo)), ones)),
        _mm256_add_epi32(part.hi, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(x.hi), _mm256_sign_epi8(_mm256_xor_si256(codes.hi, flip), x.hi)), ones)));
  }
  if (W == 8) return vi_dot(part, codes, x, W);
  VI2(_mm256_add_epi16(part.lo, _mm256_maddubs_epi16(codes.lo, x.lo)), _mm256_add_epi16(part.hi, _mm256_maddubs_epi16(codes.hi, x.hi)));
}
INLINE int32_t vp_zero_point(int W, int sym) { return W == 8 && sym ? 0 : zero_code(W); }
INLINE vint vp_widen(vint acc, vpart part, int W) {
  if (W == 8) return vi_add(acc, part);
  const __m256i ones = _mm256_set1_epi16(1);
  VI2(_mm256_add_epi32(acc.lo, _mm256_madd_epi16(part.lo, ones)), _mm256_add_epi32(acc.hi, _mm256_madd_epi16(part.hi, ones)));
}
INLINE int32_t vi_sum(vint a) {
  __m256i s = _mm256_add_epi32(a.lo, a.hi);
  __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
  return _mm_cvtsi128_si32(t);
}

INLINE vflt vf_zero(void) { VF2(_mm256_setzero_ps(), _mm256_setzero_ps()); }
INLINE vflt vf_set1(float v) { VF2(_mm256_set1_ps(v), _mm256_set1_ps(v)); }
INLINE vflt vf_load(const float *p) { VF2(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)); }
INLINE vflt vf_from_int(vint a) { VF2(_mm256_cvtepi32_ps(a.lo), _mm256_cvtepi32_ps(a.hi)); }
INLINE vflt vf_add(vflt a, vflt b) { VF2(_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)); }
INLINE vflt vf_mul(vflt a, vflt b) { VF2(_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)); }
INLINE vflt vf_fmadd(vflt a, vflt b, vflt c) { VF2(_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)); }
INLINE vflt vf_fnmadd(vflt a, vflt b, vflt c) { VF2(_mm256_fnmadd_ps(a.lo, b.lo, c.lo), _mm256_fnmadd_ps(a.hi, b.hi, c.hi)); }
INLINE vflt vf_min(vflt a, vflt b) { VF2(_mm256_min_ps(a.lo, b.lo), _mm256_min_ps(a.hi, b.hi)); }
INLINE vflt vf_max(vflt a, vflt b) { VF2(_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)); }
INLINE vflt vf_abs(vflt a) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  VF2(_mm256_and_ps(a.lo, magnitude), _mm256_and_ps(a.hi, magnitude));
}
INLINE vflt vf_round(vflt a) {
  VF2(_mm256_round_ps(a.lo, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
      _mm256_round_ps(a.hi, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
INLINE float vf_reduce_max(vflt a) {
  __m256 m = _mm256_max_ps(a.lo, a.hi);
  __m128 t = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  t = _mm_max_ps(t, _mm_shuffle_ps(t, t, 0x4E));
  t = _mm_max_ps(t, _mm_shuffle_ps(t, t, 0xB1));
  return _mm_cvtss_f32(t);
}
// Lanes below `count` of 0..7 and 8..15, as vpmaskmov masks.
INLINE __m256i lanes_below_lo(int64_t count) { return _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
INLINE __m256i lanes_below_hi(int64_t count) { return _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)count), _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15)); }
// x[k .. k + 16), zero at and beyond K (masked loads do not touch the memory they skip).
INLINE vflt vf_load_below(const float *x, int64_t k, int64_t K) {
  if (k + 16 <= K) return vf_load(x + k);
  int64_t r = k < K ? K - k : 0;
  VF2(_mm256_maskload_ps(x + k, lanes_below_lo(r)), _mm256_maskload_ps(x + k + 8, lanes_below_hi(r) ));
}
// Stores 16 results, masked to the rows below N.
INLINE void store_rows(float *y, int64_t n, int64_t N, vflt v) {
  int64_t r = N - n;
  if (r >= 16) {
    _mm256_storeu_ps(y + n, v.lo);
    _mm256_storeu_ps(y + n + 8, v.hi);
  } else if (r > 0) {
    _mm256_maskstore_ps(y + n, lanes_below_lo(r), v.lo);
    _mm256_maskstore_ps(y + n + 8, lanes_below_hi(r), v.hi);
  }
}
// 16 integral values in [-127, 127] as int8 at dst.
INLINE void store_int8(int8_t *dst, vflt q) {
  // packs interleaves the 128-bit halves: [a0-3 b0-3 | a4-7 b4-7] -> [a0-7 | b0-7]
  __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(_mm256_cvttps_epi32(q.lo), _mm256_cvttps_epi32(q.hi)), 0xD8);
  _mm_storeu_si128((__m128i *)dst, _mm_packs_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1)));
}
typedef int64_t __attribute__((may_alias, aligned(1))) unaligned_i64;
// 16 int32 of four digit bytes each (columns k .. k + 16) as four planes of 16 bytes, xq[d][Kp].
INLINE void store_digit_planes(int8_t *xq, int64_t Kp, int64_t k, vint digits) {
  // within each 128-bit lane, bytes by digit (4 columns per dword); then dwords to digit-major
  // order, so 64-bit word d holds digit d of 8 columns
  const __m256i by_digit = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                            0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  __m256i lo = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(digits.lo, by_digit), order);
  __m256i hi = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(digits.hi, by_digit), order);
#define PLANE(D)                                                          \
  *(unaligned_i64 *)(xq + (D) * Kp + k) = _mm256_extract_epi64(lo, D);   \
  *(unaligned_i64 *)(xq + (D) * Kp + k + 8) = _mm256_extract_epi64(hi, D);
  PLANE(0) PLANE(1) PLANE(2) PLANE(3)
#undef PLANE
}
INLINE vint vi_from_flt(vflt a) { VI2(_mm256_cvtps_epi32(a.lo), _mm256_cvtps_epi32(a.hi)); }

#else
#error "vnni_linear.c needs AVX-512 (F, BW, VL, VNNI, VBMI) or AVX2 with FMA"
#endif

// Step s (0..3) of 16-column block kb of a row block's codes w: 16 rows x 4 columns, as bytes.
INLINE vint step_codes(const uint8_t *w, int64_t kb, int s, int W) {
  const int per = 8 / W;  // steps per 64-byte vector
  vint v = vi_load(w + (kb * (W / 2) + s / per) * 64);
  if (W == 8) return v;
  return vi_and(vi_srli16(v, W * (s % per)), vi_set1_8((char)((1 << W) - 1)));
}

// Bytes of codes per 16-row block.
INLINE int64_t row_block_bytes(int64_t KB, int W) { return KB * 32 * W; }

// The codes and scales of plane p for the ROW_BLOCKS 16-row blocks from n1; blocks at or past
// row1 repeat block n1 (computed, never stored), so every pass runs the same instructions.
INLINE void row_blocks(const uint8_t *wb, const float *sc, int64_t p, int64_t n1, int64_t row1, int64_t Np, int64_t Gn,
                       int64_t rb, const uint8_t *w[ROW_BLOCKS], const float *sp[ROW_BLOCKS]) {
  for (int b = 0; b < ROW_BLOCKS; ++b) {
    const int64_t nb = n1 + b < row1 / 16 ? n1 + b : n1;
    w[b] = wb + (p * (Np / 16) + nb) * rb;
    sp[b] = sc + (p * Np + nb * 16) * Gn;
  }
}

// Per-group sums of one row of quantized activations (the sum(x) of sum(c * x) - z sum(x)).
static void group_sums(const int8_t *x, int64_t KB, int64_t kbg, int32_t *gsum) {
  const vint ones = vi_set1_8(1);
  for (int64_t g0 = 0, gi = 0; g0 < KB; g0 += kbg, ++gi) {
    int64_t g1 = g0 + kbg < KB ? g0 + kbg : KB;
    vint s = vi_zero();
    int64_t kb = g0;
    for (; kb + 4 <= g1; kb += 4) s = vi_dot(s, ones, vi_load(x + kb * 16), 2);
    int32_t t = vi_sum(s);
    for (; kb < g1; ++kb)
      for (int r = 0; r < 16; ++r) t += x[kb * 16 + r];
    gsum[gi] = t;
  }
}

// One 16-column block kb of two 16-row blocks (codes w0, w1) against four int8 rows (four
// tokens, or the four digit planes of one token): accumulators a0..a3 and b0..b3, 8
// independent vpdpbusd chains. Used by the INT8 four-token path and by FIXED32.
#define FOUR_ROWS_TWO_BLOCKS(X0, X1, X2, X3)                                            \
  for (int s = 0; s < 4; ++s) {                                                        \
    vint c0 = step_codes(w0, kb, s, W), c1 = step_codes(w1, kb, s, W);              \
    vint q0 = vi_set1(((const int32_t *)(X0 + kb * 16))[s]);              \
    vint q1 = vi_set1(((const int32_t *)(X1 + kb * 16))[s]);              \
    vint q2 = vi_set1(((const int32_t *)(X2 + kb * 16))[s]);              \
    vint q3 = vi_set1(((const int32_t *)(X3 + kb * 16))[s]);              \
    a0 = vi_dot(a0, c0, q0, W); b0 = vi_dot(b0, c1, q0, W);        \
    a1 = vi_dot(a1, c0, q1, W); b1 = vi_dot(b1, c1, q1, W);        \
    a2 = vi_dot(a2, c0, q2, W); b2 = vi_dot(b2, c1, q2, W);        \
    a3 = vi_dot(a3, c0, q3, W); b3 = vi_dot(b3, c1, q3, W);        \
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
      vflt ya0 = vf_zero(), ya1 = ya0, ya2 = ya0, ya3 = ya0;
      vflt yb0 = ya0, yb1 = ya0, yb2 = ya0, yb3 = ya0;
      for (int64_t p = 0; p < P; ++p) {
        const uint8_t *w0 = wb + (p * (Np / 16) + n1) * rb;
        const uint8_t *w1 = two ? w0 + rb : w0;
        const float *s0p = sc + (p * Np + n1 * 16) * Gn;
        const float *s1p = two ? s0p + 16 * Gn : s0p;
        for (int64_t g0 = 0, gi = 0; g0 < KB; g0 += kbg, ++gi) {
          int64_t g1 = g0 + kbg < KB ? g0 + kbg : KB;
          vint a0 = vi_zero(), a1 = a0, a2 = a0, a3 = a0;
          vint b0 = a0, b1 = a0, b2 = a0, b3 = a0;
          for (int64_t kb = g0; kb < g1; ++kb) {
            FOUR_ROWS_TWO_BLOCKS(x0, x1, x2, x3)
          }
          vflt sa = vf_load(s0p + gi * 16), sb = vf_load(s1p + gi * 16);
#define ACC(Y, A, S, Q) Y = vf_fmadd(vf_from_int(vi_sub(A, vi_set1(z * gsum[Q][gi]))), S, Y);
          ACC(ya0, a0, sa, 0) ACC(ya1, a1, sa, 1) ACC(ya2, a2, sa, 2) ACC(ya3, a3, sa, 3)
          ACC(yb0, b0, sb, 0) ACC(yb1, b1, sb, 1) ACC(yb2, b2, sb, 2) ACC(yb3, b3, sb, 3)
#undef ACC
        }
      }
      const int64_t n = n1 * 16;
      vflt ya[4] = {ya0, ya1, ya2, ya3}, yb[4] = {yb0, yb1, yb2, yb3};
      for (int q = 0; q < 4; ++q) {
        vflt step = vf_set1(xs[m0 + q]);
        float *yr = y + (m0 + q) * N;
        store_rows(yr, n, N, vf_mul(ya[q], step));
        if (two) store_rows(yr, n + 16, N, vf_mul(yb[q], step));
      }
    }
  }
  return m0;
}

// INT8 numerics. xq: int8 [M][Kp] (zero padded), xs: f32 [M] the activation step (amax/127);
// y: f32 [M][N]. Rows [row0, row1) for all M.
INLINE void int8_rows(const int8_t *xq, const float *xs, const uint8_t *wb, const float *sc, float *y,
                      int64_t M, int64_t N, int64_t Kp, int64_t P, int64_t G, int64_t Gn, int64_t Np,
                      int64_t row0, int64_t row1, int W, int sym) {
  const int64_t KB = Kp / 16;
  const int64_t kbg = G ? G / 16 : KB;  // 16-column blocks per scale group
  const int64_t rb = row_block_bytes(KB, W);
  const int32_t z = vp_zero_point(W, sym);
  int32_t gsum[MAX_GROUPS];
  int64_t m = M >= 4 ? int8_four_tokens(xq, xs, wb, sc, y, M, N, Kp, P, G, Gn, Np, row0, row1, W) : 0;
  // ROW_BLOCKS 16-row blocks at a time (past the last block, the extra ones repeat the first
  // and are not stored); steps 0, 2 and 1, 3 of a column block in two chains; partial sums
  // widened every `chunk` column blocks.
  const int64_t chunk = part_steps(W) / 2 < KB ? part_steps(W) / 2 : KB;
  for (; m < M; ++m) {
    const int8_t *x = xq + m * Kp;
    const vflt step = vf_set1(xs[m]);
    group_sums(x, KB, kbg, gsum);
    for (int64_t n1 = row0 / 16; n1 < row1 / 16; n1 += ROW_BLOCKS) {
      vflt yb[ROW_BLOCKS];
      for (int b = 0; b < ROW_BLOCKS; ++b) yb[b] = vf_zero();
      for (int64_t p = 0; p < P; ++p) {
        const uint8_t *w[ROW_BLOCKS];
        const float *sp[ROW_BLOCKS];
        row_blocks(wb, sc, p, n1, row1, Np, Gn, rb, w, sp);
        for (int64_t g0 = 0, gi = 0; g0 < KB; g0 += kbg, ++gi) {
          int64_t g1 = g0 + kbg < KB ? g0 + kbg : KB;
          vint acc[ROW_BLOCKS][2];
          for (int b = 0; b < ROW_BLOCKS; ++b) acc[b][0] = acc[b][1] = vi_zero();
          for (int64_t c0 = g0; c0 < g1; c0 += chunk) {
            const int64_t c1 = c0 + chunk < g1 ? c0 + chunk : g1;
            vpart part[ROW_BLOCKS][2];
            for (int b = 0; b < ROW_BLOCKS; ++b) part[b][0] = part[b][1] = vi_zero();
            for (int64_t kb = c0; kb < c1; ++kb) {
              const int32_t *x4 = (const int32_t *)(x + kb * 16);
              for (int s = 0; s < 4; ++s) {
                const vint xs4 = vi_set1(x4[s]);
                for (int b = 0; b < ROW_BLOCKS; ++b) part[b][s & 1] = vp_dot(part[b][s & 1], step_codes(w[b], kb, s, W), xs4, W, sym);
              }
            }
            for (int b = 0; b < ROW_BLOCKS; ++b)
              for (int c = 0; c < 2; ++c) acc[b][c] = vp_widen(acc[b][c], part[b][c], W);
          }
          const vint gs = vi_set1(z * gsum[gi]);
          for (int b = 0; b < ROW_BLOCKS; ++b)
            yb[b] = vf_fmadd(vf_from_int(vi_sub(vi_add(acc[b][0], acc[b][1]), gs)), vf_load(sp[b] + gi * 16), yb[b]);
        }
      }
      for (int b = 0; b < ROW_BLOCKS && n1 + b < row1 / 16; ++b) store_rows(y + m * N, (n1 + b) * 16, N, vf_mul(yb[b], step));
    }
  }
}

// FIXED32 numerics. xq: int8 [M][4][Kp], the balanced base-256 digits of x * 2^e (d = 0 least
// significant); xs: f32 [M] = 2^-e (NaN if x had a NaN or Inf). y = xs * sum_{p,g} scale *
// sum_d 256^d (acc_d - z gsum_d).
INLINE void fixed32_rows(const int8_t *xq, const float *xs, const uint8_t *wb, const float *sc, float *y,
                         int64_t M, int64_t N, int64_t Kp, int64_t P, int64_t G, int64_t Gn, int64_t Np,
                         int64_t row0, int64_t row1, int W, int sym) {
  const int64_t KB = Kp / 16;
  const int64_t kbg = G ? G / 16 : KB;
  const int64_t rb = row_block_bytes(KB, W);
  const int32_t z = vp_zero_point(W, sym);
  int32_t gsum[4][MAX_GROUPS];
  // ROW_BLOCKS 16-row blocks at a time, as in int8_rows; one chain per digit.
  const int64_t chunk = part_steps(W) / 4 < KB ? part_steps(W) / 4 : KB;
  for (int64_t m = 0; m < M; ++m) {
    const int8_t *x = xq + m * 4 * Kp;
    const vflt unit = vf_set1(xs[m]);
    for (int d = 0; d < 4; ++d) group_sums(x + d * Kp, KB, kbg, gsum[d]);
    for (int64_t n1 = row0 / 16; n1 < row1 / 16; n1 += ROW_BLOCKS) {
      vflt yb[ROW_BLOCKS];
      for (int b = 0; b < ROW_BLOCKS; ++b) yb[b] = vf_zero();
      for (int64_t p = 0; p < P; ++p) {
        const uint8_t *w[ROW_BLOCKS];
        const float *sp[ROW_BLOCKS];
        row_blocks(wb, sc, p, n1, row1, Np, Gn, rb, w, sp);
        for (int64_t g0 = 0, gi = 0; g0 < KB; g0 += kbg, ++gi) {
          int64_t g1 = g0 + kbg < KB ? g0 + kbg : KB;
          vint acc[ROW_BLOCKS][4];
          for (int b = 0; b < ROW_BLOCKS; ++b)
            for (int d = 0; d < 4; ++d) acc[b][d] = vi_zero();
          for (int64_t c0 = g0; c0 < g1; c0 += chunk) {
            const int64_t c1 = c0 + chunk < g1 ? c0 + chunk : g1;
            vpart part[ROW_BLOCKS][4];
            for (int b = 0; b < ROW_BLOCKS; ++b)
              for (int d = 0; d < 4; ++d) part[b][d] = vi_zero();
            for (int64_t kb = c0; kb < c1; ++kb) {
              for (int s = 0; s < 4; ++s) {
                vint codes[ROW_BLOCKS];
                for (int b = 0; b < ROW_BLOCKS; ++b) codes[b] = step_codes(w[b], kb, s, W);
                for (int d = 0; d < 4; ++d) {
                  const vint xd = vi_set1(((const int32_t *)(x + d * Kp + kb * 16))[s]);
                  for (int b = 0; b < ROW_BLOCKS; ++b) part[b][d] = vp_dot(part[b][d], codes[b], xd, W, sym);
                }
              }
            }
            for (int b = 0; b < ROW_BLOCKS; ++b)
              for (int d = 0; d < 4; ++d) acc[b][d] = vp_widen(acc[b][d], part[b][d], W);
          }
          // A digit's sum over a group is at most 128 * 2^(W-1) * G in magnitude: exact in f32
          // for groups of up to 2^(17-W) columns (see the header for W = 8), so weighting the
          // digits is the only rounding before the scale.
#define DIGIT(A, D) vf_from_int(vi_sub(A, vi_set1(z * gsum[D][gi])))
          for (int b = 0; b < ROW_BLOCKS; ++b) {
            vflt combined = vf_add(vf_add(vf_add(DIGIT(acc[b][0], 0), vf_mul(DIGIT(acc[b][1], 1), vf_set1(256.0f))),
                                          vf_mul(DIGIT(acc[b][2], 2), vf_set1(65536.0f))),
                                   vf_mul(DIGIT(acc[b][3], 3), vf_set1(16777216.0f)));
            yb[b] = vf_fmadd(combined, vf_load(sp[b] + gi * 16), yb[b]);
          }
#undef DIGIT
        }
      }
      for (int b = 0; b < ROW_BLOCKS && n1 + b < row1 / 16; ++b) store_rows(y + m * N, (n1 + b) * 16, N, vf_mul(yb[b], unit));
    }
  }
}

// ------------------------------------------------------------------------------------------
// Decode (M == 1, Kp <= DECODE_MAX_KP): the f32 activations are quantized by every workgroup
// itself into a stack buffer (two passes over K floats, well under a microsecond), so a decode
// linear is one dispatch instead of a quantization dispatch + kernel.

static inline float amax_f32(const float *x, int64_t K) {
  vflt m = vf_zero();
  for (int64_t k = 0; k < K; k += 16) m = vf_max(m, vf_abs(vf_load_below(x, k, K)));
  return vf_reduce_max(m);
}

// x [K] -> xq [Kp] int8, returns the step: q = round_even(x / step), step = amax / 127,
// bit-identical to the linalg and numpy models: the quotient is x * (1/step) corrected once
// with an fma (Markstein), which rounds correctly without a division per element.
static float quantize_int8(const float *x, int64_t K, int64_t Kp, int8_t *xq) {
  float amax = amax_f32(x, K);
  if (amax < 1e-30f) amax = 1e-30f;
  const float step_s = amax / 127.0f;
  const vflt step = vf_set1(step_s), inv = vf_set1(1.0f / step_s);
  const vflt hi = vf_set1(127.0f), lo = vf_set1(-127.0f);
  for (int64_t k = 0; k < Kp; k += 16) {
    vflt v = vf_load_below(x, k, K);
    vflt q = vf_mul(v, inv);
    q = vf_fmadd(vf_fnmadd(q, step, v), inv, q);
    store_int8(xq + k, vf_max(vf_min(vf_round(q), hi), lo));
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
  const vflt scale = vf_set1(pow_e.f);
  // Adding 0x80808080 and flipping each byte's top bit turns an int32 into its four balanced
  // signed base-256 digits, one per byte.
  const vint bias = vi_set1((int32_t)0x80808080u);
  for (int64_t k = 0; k < Kp; k += 16) {
    vint vi = vi_from_flt(vf_round(vf_mul(vf_load_below(x, k, K), scale)));
    store_digit_planes(xq, Kp, k, vi_xor(vi_add(vi, bias), bias));
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

#define ENTRY_POINTS(NAME, W, SYM)                                                                              \
  void linear_##NAME##_int8_wg(MEMREF1(const int8_t, xq), MEMREF1(const float, xs),                     \
                             MEMREF1(const uint8_t, wb), MEMREF1(const float, sc), MEMREF1(float, y), \
                             int64_t M, int64_t N, int64_t Kp, int64_t P, int64_t G, int64_t Gn,      \
                             int64_t Np, int64_t wg, int64_t rows_per_wg) {                           \
    int8_rows(xq + xq_off, xs + xs_off, wb + wb_off, sc + sc_off, y + y_off, M, N, Kp, P, G, Gn, Np,  \
              wg * rows_per_wg, rows_end(wg, rows_per_wg, Np), W, SYM);                                    \
  }                                                                                                   \
  void linear_##NAME##_fixed32_wg(MEMREF1(const int8_t, xq), MEMREF1(const float, xs),                  \
                                MEMREF1(const uint8_t, wb), MEMREF1(const float, sc), MEMREF1(float, y), \
                                int64_t M, int64_t N, int64_t Kp, int64_t P, int64_t G, int64_t Gn,   \
                                int64_t Np, int64_t wg, int64_t rows_per_wg) {                        \
    fixed32_rows(xq + xq_off, xs + xs_off, wb + wb_off, sc + sc_off, y + y_off, M, N, Kp, P, G, Gn,   \
                 Np, wg * rows_per_wg, rows_end(wg, rows_per_wg, Np), W, SYM);                             \
  }                                                                                                   \
  void linear_##NAME##_int8_decode_wg(MEMREF1(const float, x), MEMREF1(const uint8_t, wb),              \
                                    MEMREF1(const float, sc), MEMREF1(float, y), int64_t N, int64_t K, \
                                    int64_t Kp, int64_t P, int64_t G, int64_t Gn, int64_t Np,         \
                                    int64_t wg, int64_t rows_per_wg) {                                \
    int8_t xq[DECODE_MAX_KP] __attribute__((aligned(64)));                                            \
    float step = quantize_int8(x + x_off, K, Kp, xq);                                                 \
    int8_rows(xq, &step, wb + wb_off, sc + sc_off, y + y_off, 1, N, Kp, P, G, Gn, Np,                 \
              wg * rows_per_wg, rows_end(wg, rows_per_wg, Np), W, SYM);                                    \
  }                                                                                                   \
  void linear_##NAME##_fixed32_decode_wg(MEMREF1(const float, x), MEMREF1(const uint8_t, wb),           \
                                       MEMREF1(const float, sc), MEMREF1(float, y), int64_t N,        \
                                       int64_t K, int64_t Kp, int64_t P, int64_t G, int64_t Gn,       \
                                       int64_t Np, int64_t wg, int64_t rows_per_wg) {                 \
    int8_t xq[4 * DECODE_MAX_KP] __attribute__((aligned(64)));                                        \
    float unit = quantize_fixed32(x + x_off, K, Kp, xq);                                              \
    fixed32_rows(xq, &unit, wb + wb_off, sc + sc_off, y + y_off, 1, N, Kp, P, G, Gn, Np,              \
                 wg * rows_per_wg, rows_end(wg, rows_per_wg, Np), W, SYM);                                 \
  }

ENTRY_POINTS(w2, 2, 0)
ENTRY_POINTS(w4, 4, 0)
ENTRY_POINTS(w8, 8, 0)
// 8-bit codes without the code 0 (int8_linear's [-127, 127], codes of 5-7 bits): the same
// results; on AVX2 half the vpmaddubsw of `w8` (see vp_dot).
ENTRY_POINTS(w8s, 8, 1)

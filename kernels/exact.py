"""The fast exact kernel of `harden.ternary_linear` for IREE's CPU backend, as an MLIR template.

Weights are re-laid out offline (still 2 bits per weight) as i32 words `[N2, P, Kp, 4]`:
one word holds the codes c = t + 1 of 16 consecutive output rows at one column, row j in
bits 2j..2j+1. One `linalg.generic` accumulates `x * uitofp(word & (3 << 2j))` per lane j,
which is exactly x * c * 4^j in f32; the epilogue multiplies by scale * 4^-j and subtracts
scale * sum(x) (so t = c - 1), per plane and scale group. Results equal the numpy reference
of the dequantized weight up to f32 rounding.

Speed needs IREE to tile the generic as written (4 accumulators of 16 lanes): the generic
carries `harden.cpu_tiling` (distribution / vector tile sizes), which the IREE step turns
into an `#iree_codegen.compilation_info` (backend/compile.py). IREE silently ignores that
configuration if it folds unit dimensions or collapses contiguous ones, so the template
keeps unit dimensions (M, P, groups of 1) out of the generic and lays the words out so
that no two of its dimensions collapse.

Measured on this machine (single-thread CPU time, decode M=1): 5-7x faster than IREE's f32
matmul for the TinyLlama linears; without the tiling configuration only 1.2-1.5x.
"""

from __future__ import annotations

import numpy as np

from harden.dialects.ternary_pack import unpack_ternary_2bit
from harden.kernels.contract import CPU_TILING_ATTR

ROW_BLOCKS = 4  # R: row blocks of 16 per word group, one vector accumulator each


def prepack_words(packed, scales, N, K, G, R=ROW_BLOCKS) -> dict:
    """The kernel's constants from the canonical layout (packed i8 [P, N, ceil(K/4)], scales
    [P, 1|N, 1|Gn]); N, K, G = out_features, in_features, group_size. Returns:
       w  i32 [N2, P, Kp, R]  word (n2, p, k, r): codes c = t+1 of rows n = (n2*R + r)*16 + j,
                              j = 0..15, at column k, row j in bits 2j..2j+1 (2 bits / weight;
                              tile-major so a workgroup streams contiguous memory)
       s1 f32                 scale * 4^-(n % 16)   ([P, Gn, Np], or [Np, P, Gn] for layout "blk")
       s0 f32                 scale                 (same layout as s1)
       Np = N rounded up to 16*R (pad rows code 1), Kp = Gn*G (pad columns code 1; the kernel
       zero-pads x), G = K for tensor/channel scales (Gn = 1)."""
    P = packed.shape[0]
    Gn = scales.shape[2]
    if Gn == 1:
        G = K
    Kp = Gn * G
    Np = -(-N // (16 * R)) * 16 * R
    N2 = Np // (16 * R)
    t = unpack_ternary_2bit(packed, K)
    c = np.ones((P, Np, Kp), np.uint64)
    c[:, :N, :K] = t + 1
    c = c.reshape(P, N2, R, 16, Kp).transpose(1, 0, 4, 2, 3)  # n2, p, k, r, j
    w = (c << (np.arange(16, dtype=np.uint64) * 2)).sum(-1).astype(np.uint32)
    w = np.ascontiguousarray(w).view(np.int32)
    s = np.zeros((P, Np, Gn), np.float32)
    s[:, :N, :] = np.broadcast_to(scales, (P, N, Gn))
    s0 = np.ascontiguousarray(s.transpose(0, 2, 1))  # P, Gn, Np
    s1 = (s0 * (0.25 ** (np.arange(Np) % 16))).astype(np.float32)
    layout = "blk" if (P == 1 and Gn > 1) else "pgn"
    if layout == "blk":
        s1 = np.ascontiguousarray(s1.transpose(2, 0, 1))
        s0 = np.ascontiguousarray(s0.transpose(2, 0, 1))
    return dict(w=w, s1=s1, s0=s0, Np=Np, Kp=Kp, G=G, Gn=Gn, R=R, P=P, N2=N2, layout=layout)


def _t(shape, et):
    return "tensor<" + "x".join(str(s) for s in shape) + f"x{et}>"


def cpu_tiling(dist, par, red) -> str:
    """The `harden.cpu_tiling` dictionary (tile sizes per loop of the generic)."""
    f = lambda l: "[" + ", ".join(str(v) for v in l) + "]"
    return f"{{distribution = {f(dist)}, vector_common_parallel = {f(par)}, vector_reduction = {f(red)}}}"


def _groups(keep):
    """reassociation folding absent (unit) dims into the next present one; returns (text, n)."""
    groups, cur = [], []
    for i, kp in enumerate(keep):
        cur.append(i)
        if kp:
            groups.append(cur)
            cur = []
    if cur:
        groups[-1] += cur
    return "[" + ", ".join("[" + ", ".join(map(str, g)) + "]" for g in groups) + "]", len(groups)


def kernel_function_text(fn, M, N, K, pk, bias=False) -> str:
    """MLIR text of
         func.func private @fn(%x: MxK f32, %w: i32 words, %s1: f32, %s0: f32[, %b: N f32]) -> MxN f32
    (pk: dict from prepack_words; the caller passes the constants). Dialects: func, arith,
    tensor, linalg. Unit dims (M, P, Gn == 1) are left out of the main generic and no two of
    its dims are collapsible (see the module docstring)."""
    P, Gn, G, R, N2, Np, Kp, layout = (pk[k] for k in ("P", "Gn", "G", "R", "N2", "Np", "Kp", "layout"))
    # Tile sizes measured best here: 2 word groups per workgroup at decode, 4 tokens per
    # vector tile at prefill, 4-deep unrolled reduction.
    dist_n2 = 2 if M == 1 else 1
    vec_m = 1 if M == 1 else (4 if M % 4 == 0 else 1)
    vec_k = 4
    T = _t
    dims = ([("m", M, "parallel")] if M > 1 else []) + ([("p", P, "parallel")] if P > 1 else []) \
        + ([("g", Gn, "parallel")] if Gn > 1 else []) \
        + [("n2", N2, "parallel"), ("r", R, "parallel"), ("n0", 16, "parallel"), ("k", G, "reduction")]
    names = [d[0] for d in dims]
    has = names.__contains__
    D = "(" + ", ".join(names) + ")"
    amap = lambda ds: f"affine_map<{D} -> ({', '.join(ds)})>"
    xdims = [n for n in ("m", "g") if has(n)] + ["k"]
    xshape = [{"m": M, "g": Gn}[n] for n in xdims[:-1]] + [G]
    wdims = ["n2"] + [n for n in ("p", "g") if has(n)] + ["k", "r"]
    wshape = [{"p": P, "n2": N2, "g": Gn, "k": G, "r": R}[n] for n in wdims]
    if layout == "pgn" or P * Gn == 1:
        full_o = ["m", "p", "g", "n2", "r", "n0"]
    else:
        full_o = ["m", "n2", "p", "g", "r", "n0"]
    odims = [d for d in full_o if d in ("n2", "r", "n0") or has(d)]
    sizes = {"m": M, "p": P, "g": Gn, "n2": N2, "r": R, "n0": 16}
    oshape = [sizes[n] for n in odims]
    tiles = {"m": (min(M, 16) if vec_m > 1 else 1, vec_m, 0), "p": (0, 1, 0), "g": (0, 1, 0),
             "n2": (dist_n2, 1, 0), "r": (R, R, 0), "n0": (16, 16, 0), "k": (0, 0, vec_k)}
    tiling = cpu_tiling([tiles[n][0] for n in names], [tiles[n][1] for n in names], [tiles[n][2] for n in names])
    attr = f", {CPU_TILING_ATTR} = {tiling}"
    wt, st = T(pk["w"].shape, "i32"), T(pk["s1"].shape, "f32")
    args = f"%x: {T((M,K),'f32')}, %w: {wt}, %s1: {st}, %s0: {st}" + (f", %b: {T((N,),'f32')}" if bias else "")
    L = []
    A = L.append
    A(f"  func.func private @{fn}({args}) -> {T((M,N),'f32')} {{")
    A("    %zf = arith.constant 0.0 : f32")
    if Kp != K:
        A(f"    %xp = tensor.pad %x low[0, 0] high[0, {Kp-K}] {{\n    ^bb0(%i0: index, %i1: index):\n      tensor.yield %zf : f32\n    }} : {T((M,K),'f32')} to {T((M,Kp),'f32')}")
        xp = "%xp"
    else:
        xp = "%x"
    A(f"    %x3 = tensor.expand_shape {xp} [[0], [1, 2]] output_shape [{M}, {Gn}, {G}] : {T((M,Kp),'f32')} into {T((M,Gn,G),'f32')}")
    reas, n = _groups([M > 1, Gn > 1, True])
    xv = "%x3"
    if n != 3:
        A(f"    %xv = tensor.collapse_shape %x3 {reas} : {T((M,Gn,G),'f32')} into {T(xshape,'f32')}")
        xv = "%xv"
    A(f"    %w5 = tensor.expand_shape %w [[0], [1], [2, 3], [4]] output_shape [{N2}, {P}, {Gn}, {G}, {R}] : {wt} into {T((N2,P,Gn,G,R),'i32')}")
    reas, n = _groups([True, P > 1, Gn > 1, True, True])
    wv = "%w5"
    if n != 5:
        A(f"    %wv = tensor.collapse_shape %w5 {reas} : {T((N2,P,Gn,G,R),'i32')} into {T(wshape,'i32')}")
        wv = "%wv"
    A(f"    %e = tensor.empty() : {T(oshape,'f32')}")
    A(f"    %f = linalg.fill ins(%zf : f32) outs(%e : {T(oshape,'f32')}) -> {T(oshape,'f32')}")
    A(f"    %part = linalg.generic {{indexing_maps = [{amap(xdims)}, {amap(wdims)}, {amap(odims)}],")
    A(f"        iterator_types = [{', '.join(chr(34) + d[2] + chr(34) for d in dims)}]{attr}}}")
    A(f"        ins({xv}, {wv} : {T(xshape,'f32')}, {T(wshape,'i32')}) outs(%f : {T(oshape,'f32')}) {{")
    A("    ^bb0(%xe: f32, %we: i32, %a: f32):")
    A(f"      %n0 = linalg.index {names.index('n0')} : index")
    A("      %n0i = arith.index_cast %n0 : index to i32")
    A("      %c1 = arith.constant 1 : i32")
    A("      %c3 = arith.constant 3 : i32")
    A("      %two = arith.shli %n0i, %c1 : i32")
    A("      %mk = arith.shli %c3, %two : i32")
    A("      %cw = arith.andi %we, %mk : i32")
    A("      %cf = arith.uitofp %cw : i32 to f32")
    A("      %pr = arith.mulf %xe, %cf : f32")
    A("      %o = arith.addf %a, %pr : f32")
    A("      linalg.yield %o : f32")
    A(f"    }} -> {T(oshape,'f32')}")
    A(f"    %esx = tensor.empty() : {T((M,Gn),'f32')}")
    A(f"    %fsx = linalg.fill ins(%zf : f32) outs(%esx : {T((M,Gn),'f32')}) -> {T((M,Gn),'f32')}")
    A("    %sx = linalg.generic {indexing_maps = [affine_map<(m, g, k) -> (m, g, k)>, affine_map<(m, g, k) -> (m, g)>], iterator_types = [\"parallel\", \"parallel\", \"reduction\"]}")
    A(f"        ins(%x3 : {T((M,Gn,G),'f32')}) outs(%fsx : {T((M,Gn),'f32')}) {{")
    A("    ^bb0(%xe: f32, %a: f32):")
    A("      %o = arith.addf %a, %xe : f32")
    A("      linalg.yield %o : f32")
    A(f"    }} -> {T((M,Gn),'f32')}")
    full_shape = [sizes[d] for d in full_o]
    reas, n = _groups([d in odims for d in full_o])
    pf = "%part"
    if n != 6:
        A(f"    %pf = tensor.expand_shape %part {reas} output_shape [{', '.join(map(str, full_shape))}] : {T(oshape,'f32')} into {T(full_shape,'f32')}")
        pf = "%pf"
    emap = lambda ds: f"affine_map<(m, n2, r, n0, p, g) -> ({', '.join(ds)})>"
    if layout == "pgn" or P * Gn == 1:
        s_shape = (P, Gn, N2, R, 16); s_map = emap(["p", "g", "n2", "r", "n0"])
        A(f"    %s1e = tensor.expand_shape %s1 [[0], [1], [2, 3, 4]] output_shape [{P}, {Gn}, {N2}, {R}, 16] : {st} into {T(s_shape,'f32')}")
        A(f"    %s0e = tensor.expand_shape %s0 [[0], [1], [2, 3, 4]] output_shape [{P}, {Gn}, {N2}, {R}, 16] : {st} into {T(s_shape,'f32')}")
    else:
        s_shape = (N2, R, 16, P, Gn); s_map = emap(["n2", "r", "n0", "p", "g"])
        A(f"    %s1e = tensor.expand_shape %s1 [[0, 1, 2], [3], [4]] output_shape [{N2}, {R}, 16, {P}, {Gn}] : {st} into {T(s_shape,'f32')}")
        A(f"    %s0e = tensor.expand_shape %s0 [[0, 1, 2], [3], [4]] output_shape [{N2}, {R}, 16, {P}, {Gn}] : {st} into {T(s_shape,'f32')}")
    o4 = T((M, N2, R, 16), "f32")
    A(f"    %ey = tensor.empty() : {o4}")
    A(f"    %fy = linalg.fill ins(%zf : f32) outs(%ey : {o4}) -> {o4}")
    A(f"    %y4 = linalg.generic {{indexing_maps = [{emap(full_o)}, {emap(['m', 'g'])}, {s_map}, {s_map}, {emap(['m', 'n2', 'r', 'n0'])}],")
    A("        iterator_types = [\"parallel\", \"parallel\", \"parallel\", \"parallel\", \"reduction\", \"reduction\"]}")
    A(f"        ins({pf}, %sx, %s1e, %s0e : {T(full_shape,'f32')}, {T((M,Gn),'f32')}, {T(s_shape,'f32')}, {T(s_shape,'f32')}) outs(%fy : {o4}) {{")
    A("    ^bb0(%pv: f32, %sxv: f32, %a1: f32, %a0: f32, %acc: f32):")
    A("      %u = arith.mulf %pv, %a1 : f32")
    A("      %v = arith.mulf %sxv, %a0 : f32")
    A("      %d = arith.subf %u, %v : f32")
    A("      %o = arith.addf %acc, %d : f32")
    A("      linalg.yield %o : f32")
    A(f"    }} -> {o4}")
    A(f"    %yp = tensor.collapse_shape %y4 [[0], [1, 2, 3]] : {o4} into {T((M,Np),'f32')}")
    y = "%yp"
    if Np != N:
        A(f"    %ys = tensor.extract_slice %yp[0, 0] [{M}, {N}] [1, 1] : {T((M,Np),'f32')} to {T((M,N),'f32')}")
        y = "%ys"
    if bias:
        A(f"    %eb = tensor.empty() : {T((M,N),'f32')}")
        A("    %yb = linalg.generic {indexing_maps = [affine_map<(m, n) -> (m, n)>, affine_map<(m, n) -> (n)>, affine_map<(m, n) -> (m, n)>], iterator_types = [\"parallel\", \"parallel\"]}")
        A(f"        ins({y}, %b : {T((M,N),'f32')}, {T((N,),'f32')}) outs(%eb : {T((M,N),'f32')}) {{")
        A("    ^bb0(%yv: f32, %bv: f32, %o: f32):")
        A("      %r = arith.addf %yv, %bv : f32")
        A("      linalg.yield %r : f32")
        A(f"    }} -> {T((M,N),'f32')}")
        y = "%yb"
    A(f"    return {y} : {T((M,N),'f32')}")
    A("  }")
    return "\n".join(L) + "\n"



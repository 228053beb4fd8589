// oneDNN 2-D convolutions as an XLA FFI handler (diffjax/nn/conv.py builds and calls it): the forward pass (kind
// 0), the data gradient (1) and the weight gradient (2) of a square-strided, symmetrically padded convolution of
// NHWC activations with an HWIO kernel, in float32 or bfloat16, and Winograd's forward pass (3) and weight
// gradient (4) of 3x3 SAME float32 ones. Primitives are built once per shape and cached; oneDNN picks its own
// weight layout, into which the HWIO kernel is reordered per call (a few hundred kB).
#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;

namespace {

// The convolution's three tensors; each kind reads two of them (a, b) and writes the third (out).
enum Role { kSrc, kWei, kDst };
constexpr Role kRoles[3][3] = {{kSrc, kWei, kDst},    // kind 0, forward: dst = conv(src, wei)
                               {kDst, kWei, kSrc},    // kind 1, data gradient: d src from (d dst, wei)
                               {kSrc, kDst, kWei}};   // kind 2, weight gradient: d wei from (src, d dst)
constexpr int kArgs[3][3] = {{DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                             {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC},
                             {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS}};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct Tensor {  // one role's logical oneDNN dims (N, C, H, W) or (O, I, KH, KW), dtype and user layout
  memory::dims dims;
  memory::data_type type;
  tag layout;
};

Tensor FromBuffer(const ffi::AnyBuffer& buf, Role role) {
  auto d = buf.dimensions();
  auto type = buf.element_type() == ffi::DataType::BF16 ? memory::data_type::bf16 : memory::data_type::f32;
  if (role == kWei) return {{d[3], d[2], d[0], d[1]}, type, tag::hwio};
  return {{d[0], d[3], d[1], d[2]}, type, tag::nhwc};
}

struct Cached {
  dnnl::primitive prim;
  std::array<memory::desc, 3> mds;  // the primitive's own layouts of a, b and out
  memory::desc scratch_md;
};

std::mutex cache_mu;  // guards both primitive caches

// cache[key], built by build() on first use.
template <typename T, typename Build>
std::shared_ptr<T> Cache(std::unordered_map<std::string, std::shared_ptr<T>>& cache, const std::string& key,
                         Build build) {
  std::lock_guard<std::mutex> lock(cache_mu);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, build()).first;
  return it->second;
}

std::unordered_map<std::string, std::shared_ptr<Cached>> conv_cache;

std::shared_ptr<Cached> Build(int64_t kind, const std::array<Tensor, 3>& t, memory::dims strides,
                              memory::dims pad_l, memory::dims pad_r) {
  auto& eng = Engine();
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto src_md = memory::desc(t[kSrc].dims, t[kSrc].type, tag::nhwc);
  auto dst_md = memory::desc(t[kDst].dims, t[kDst].type, tag::nhwc);
  auto wei_any = memory::desc(t[kWei].dims, t[kWei].type, tag::any);
  auto fwd = dnnl::convolution_forward::primitive_desc(
      eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src_md, wei_any, dst_md,
      strides, pad_l, pad_r, attr);
  auto c = std::make_shared<Cached>();
  dnnl::primitive_desc_base pd = fwd;
  if (kind == 0) {
    c->prim = dnnl::convolution_forward(fwd);
  } else if (kind == 1) {
    auto bwd = dnnl::convolution_backward_data::primitive_desc(
        eng, dnnl::algorithm::convolution_direct, src_md, wei_any, dst_md, strides, pad_l, pad_r, fwd, attr);
    c->prim = dnnl::convolution_backward_data(bwd);
    pd = bwd;
  } else {
    auto bwd = dnnl::convolution_backward_weights::primitive_desc(
        eng, dnnl::algorithm::convolution_direct, src_md, wei_any, dst_md, strides, pad_l, pad_r, fwd, attr);
    c->prim = dnnl::convolution_backward_weights(bwd);
    pd = bwd;
  }
  for (int i = 0; i < 3; ++i) c->mds[i] = pd.query_md(dnnl::query::exec_arg_md, kArgs[kind][i]);
  c->scratch_md = pd.scratchpad_desc();
  return c;
}

ffi::Error RunConv(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out, int64_t kind,
                   int64_t stride, int64_t pad_lo, int64_t pad_hi) {
  if (a.dimensions().size() != 4 || b.dimensions().size() != 4 || out->dimensions().size() != 4)
    return ffi::Error::InvalidArgument("rank 4 expected");
  const ffi::AnyBuffer* bufs[3] = {&a, &b, &(*out)};
  std::array<Tensor, 3> t;  // indexed by role
  for (int i = 0; i < 3; ++i) t[kRoles[kind][i]] = FromBuffer(*bufs[i], kRoles[kind][i]);
  std::string key = std::to_string(kind) + "|" + std::to_string(stride) + "|" + std::to_string(pad_lo) + "|" +
                    std::to_string(pad_hi);
  for (const auto& r : t) {
    key += "|" + std::to_string(int(r.type));
    for (auto x : r.dims) key += "," + std::to_string(x);
  }
  const auto c = Cache(conv_cache, key, [&] {
    return Build(kind, t, {stride, stride}, {pad_lo, pad_lo}, {pad_hi, pad_hi});
  });
  auto& eng = Engine();
  dnnl::stream stream(eng);
  std::unordered_map<int, memory> args;
  memory user_out, own_out;
  for (int i = 0; i < 3; ++i) {  // the user's buffers, reordered where the primitive wants another layout
    const Tensor& r = t[kRoles[kind][i]];
    memory user(memory::desc(r.dims, r.type, r.layout), eng, bufs[i]->untyped_data());
    memory own = user.get_desc() == c->mds[i] ? user : memory(c->mds[i], eng);
    if (i < 2 && own != user) dnnl::reorder(user, own).execute(stream, user, own);
    if (i == 2) user_out = user, own_out = own;
    args[kArgs[kind][i]] = own;
  }
  thread_local std::vector<uint8_t> scratch;
  if (scratch.size() < c->scratch_md.get_size()) scratch.resize(c->scratch_md.get_size());
  args[DNNL_ARG_SCRATCHPAD] = memory(c->scratch_md, eng, scratch.data());
  c->prim.execute(stream, args);
  if (own_out != user_out) dnnl::reorder(own_out, user_out).execute(stream, own_out, user_out);
  stream.wait();
  return ffi::Error::Success();
}

// Winograd F(4x4, 3x3) (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks"): a 3x3
// convolution of stride 1 padded by 1, per 6x6 input tile d (tiles 4 apart) and 4x4 output tile,
//   Y = A^T [U . V] A,  U = G w G^T,  V = B^T d B,
// the 36 elementwise products summed over input channels as 36 matrix products (oneDNN matmul): 4x fewer
// multiplications than the direct convolution. Its weight gradient, by the adjoint of each linear map,
//   dw = G^T [sum over tiles V . (A dY A^T)] G.
// Tensors are NHWC / HWIO float32 with channels a multiple of kLanes; the transforms run on kLanes channels at
// once, tiles in parallel (OpenMP). Tile-major buffers: V [tile][36][C], M and Z [tile][36][O].
constexpr int kLanes = 16;
constexpr float kG[6][3] = {{1.f / 4, 0, 0},
                            {-1.f / 6, -1.f / 6, -1.f / 6},
                            {-1.f / 6, 1.f / 6, -1.f / 6},
                            {1.f / 24, 1.f / 12, 1.f / 6},
                            {1.f / 24, -1.f / 12, 1.f / 6},
                            {0, 0, 1}};
constexpr float kGT[3][6] = {{kG[0][0], kG[1][0], kG[2][0], kG[3][0], kG[4][0], kG[5][0]},
                             {kG[0][1], kG[1][1], kG[2][1], kG[3][1], kG[4][1], kG[5][1]},
                             {kG[0][2], kG[1][2], kG[2][2], kG[3][2], kG[4][2], kG[5][2]}};

// r = B^T d along one axis of the tile, for kLanes channels (zeros of B^T written out: float `0 * x` is not 0).
inline void InputAxis(const float* const d[6], float r[6][kLanes]) {
  for (int l = 0; l < kLanes; ++l) {
    const float d0 = d[0][l], d1 = d[1][l], d2 = d[2][l], d3 = d[3][l], d4 = d[4][l], d5 = d[5][l];
    r[0][l] = 4 * d0 - 5 * d2 + d4;
    r[1][l] = -4 * (d1 + d2) + d3 + d4;
    r[2][l] = 4 * (d1 - d2) - d3 + d4;
    r[3][l] = -2 * (d1 - d3) - d2 + d4;
    r[4][l] = 2 * (d1 - d3) - d2 + d4;
    r[5][l] = 4 * d1 - 5 * d3 + d5;
  }
}

// r = A^T m along one axis.
inline void OutputAxis(const float* const m[6], float r[4][kLanes]) {
  for (int l = 0; l < kLanes; ++l) {
    const float m0 = m[0][l], m1 = m[1][l], m2 = m[2][l], m3 = m[3][l], m4 = m[4][l], m5 = m[5][l];
    r[0][l] = m0 + m1 + m2 + m3 + m4;
    r[1][l] = m1 - m2 + 2 * (m3 - m4);
    r[2][l] = m1 + m2 + 4 * (m3 + m4);
    r[3][l] = m1 - m2 + 8 * (m3 - m4) + m5;
  }
}

// r = A g along one axis (the adjoint of OutputAxis).
inline void GradAxis(const float* const g[4], float r[6][kLanes]) {
  for (int l = 0; l < kLanes; ++l) {
    const float g0 = g[0][l], g1 = g[1][l], g2 = g[2][l], g3 = g[3][l];
    r[0][l] = g0;
    r[1][l] = g0 + g1 + g2 + g3;
    r[2][l] = g0 - g1 + g2 - g3;
    r[3][l] = g0 + 2 * g1 + 4 * g2 + 8 * g3;
    r[4][l] = g0 - 2 * g1 + 4 * g2 - 8 * g3;
    r[5][l] = g3;
  }
}

struct Tiles {  // an NHWC image batch cut into 4x4 output tiles
  int64_t n, h, w, th, tw, count;
  Tiles(int64_t n, int64_t h, int64_t w) : n(n), h(h), w(w), th((h + 3) / 4), tw((w + 3) / 4), count(n * th * tw) {}
  // Offset in pixels of row i, column j of tile p's window (moved up and left by `shift`), or -1 outside the image.
  int64_t Pixel(int64_t p, int64_t i, int64_t j, int64_t shift) const {
    const int64_t r = (p / tw % th) * 4 + i - shift, q = (p % tw) * 4 + j - shift;
    return r < 0 || r >= h || q < 0 || q >= w ? -1 : (p / (th * tw) * h + r) * w + q;
  }
};

// V[p][ab][c] = (B^T d B)[a][b], d tile p's 6x6 input patch (zero outside the image).
void InputTiles(const float* x, const Tiles& t, int64_t c, float* v) {
  static const float zeros[kLanes] = {};
#pragma omp parallel for
  for (int64_t p = 0; p < t.count; ++p) {
    int64_t pix[6][6];
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 6; ++j) pix[i][j] = t.Pixel(p, i, j, 1);
    for (int64_t cb = 0; cb < c; cb += kLanes) {
      float rows[6][6][kLanes], r[6][kLanes];  // rows[a][j] = (B^T d)[a][j]
      for (int j = 0; j < 6; ++j) {
        const float* col[6];
        for (int i = 0; i < 6; ++i) col[i] = pix[i][j] < 0 ? zeros : x + pix[i][j] * c + cb;
        InputAxis(col, r);
        for (int a = 0; a < 6; ++a) std::copy(r[a], r[a] + kLanes, rows[a][j]);
      }
      for (int a = 0; a < 6; ++a) {
        const float* row[6] = {rows[a][0], rows[a][1], rows[a][2], rows[a][3], rows[a][4], rows[a][5]};
        InputAxis(row, r);
        for (int b = 0; b < 6; ++b) std::copy(r[b], r[b] + kLanes, v + (p * 36 + a * 6 + b) * c + cb);
      }
    }
  }
}

// Y tile p = A^T M_p A, written where it falls inside the image.
void OutputTiles(const float* m, const Tiles& t, int64_t o, float* y) {
#pragma omp parallel for
  for (int64_t p = 0; p < t.count; ++p) {
    for (int64_t ob = 0; ob < o; ob += kLanes) {
      float cols[4][6][kLanes], r[4][kLanes];  // cols[i][b] = (A^T M)[i][b]
      for (int b = 0; b < 6; ++b) {
        const float* col[6];
        for (int a = 0; a < 6; ++a) col[a] = m + (p * 36 + a * 6 + b) * o + ob;
        OutputAxis(col, r);
        for (int i = 0; i < 4; ++i) std::copy(r[i], r[i] + kLanes, cols[i][b]);
      }
      for (int i = 0; i < 4; ++i) {
        const float* row[6] = {cols[i][0], cols[i][1], cols[i][2], cols[i][3], cols[i][4], cols[i][5]};
        OutputAxis(row, r);
        for (int j = 0; j < 4; ++j) {
          const int64_t px = t.Pixel(p, i, j, 0);
          if (px >= 0) std::copy(r[j], r[j] + kLanes, y + px * o + ob);
        }
      }
    }
  }
}

// Z[p][ab][o] = (A dY_p A^T)[a][b], dY_p tile p's 4x4 output gradient (zero outside the image).
void GradTiles(const float* g, const Tiles& t, int64_t o, float* z) {
  static const float zeros[kLanes] = {};
#pragma omp parallel for
  for (int64_t p = 0; p < t.count; ++p) {
    for (int64_t ob = 0; ob < o; ob += kLanes) {
      float cols[6][4][kLanes], r[6][kLanes];  // cols[a][j] = (A dY)[a][j]
      for (int j = 0; j < 4; ++j) {
        const float* col[4];
        for (int i = 0; i < 4; ++i) {
          const int64_t px = t.Pixel(p, i, j, 0);
          col[i] = px < 0 ? zeros : g + px * o + ob;
        }
        GradAxis(col, r);
        for (int a = 0; a < 6; ++a) std::copy(r[a], r[a] + kLanes, cols[a][j]);
      }
      for (int a = 0; a < 6; ++a) {
        const float* row[4] = {cols[a][0], cols[a][1], cols[a][2], cols[a][3]};
        GradAxis(row, r);
        for (int b = 0; b < 6; ++b) std::copy(r[b], r[b] + kLanes, z + (p * 36 + a * 6 + b) * o + ob);
      }
    }
  }
}

// out[p][q] = (M in M^T)[p][q] for every (c, o), kLanes output channels at once: in [Q][Q][C][O] -> out
// [P][P][C][O]. With M = G (6x3) the kernel's transform U = G w G^T; with M = G^T its adjoint, dw = G^T dU G.
template <int P, int Q>
void KernelTransform(const float (&mat)[P][Q], const float* in, int64_t c, int64_t o, float* out) {
#pragma omp parallel for
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t ob = 0; ob < o; ob += kLanes) {
      float t[P][Q][kLanes] = {}, r[kLanes];  // t = M in
      for (int i = 0; i < Q; ++i)
        for (int j = 0; j < Q; ++j) {
          const float* x = in + ((i * Q + j) * c + ci) * o + ob;
          for (int p = 0; p < P; ++p)
            for (int l = 0; l < kLanes; ++l) t[p][j][l] += mat[p][i] * x[l];
        }
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < P; ++q) {
          for (int l = 0; l < kLanes; ++l) {
            r[l] = 0;
            for (int j = 0; j < Q; ++j) r[l] += t[p][j][l] * mat[q][j];
          }
          std::copy(r, r + kLanes, out + ((p * P + q) * c + ci) * o + ob);
        }
    }
}

struct Matmul {  // 36 products, one per tile point, and the scratchpad they need
  dnnl::matmul prim;
  memory::desc a_md, b_md, out_md, scratch_md;
};

std::unordered_map<std::string, std::shared_ptr<Matmul>> matmul_cache;

// kind 3 (forward): M[ab] = V[ab] U[ab], [tiles, C] x [C, O]; kind 4 (weight gradient): dU[ab] = V[ab]^T Z[ab],
// [C, tiles] x [tiles, O]. V, M and Z are tile-major, so the tile axis has stride 36 rows.
std::shared_ptr<Matmul> BuildMatmul(int64_t kind, int64_t tiles, int64_t c, int64_t o) {
  auto mm = std::make_shared<Matmul>();
  const auto f32 = memory::data_type::f32;
  const memory::desc z_md({36, tiles, o}, f32, memory::dims{o, 36 * o, 1});
  if (kind == 3) {
    mm->a_md = memory::desc({36, tiles, c}, f32, memory::dims{c, 36 * c, 1});
    mm->b_md = memory::desc({36, c, o}, f32, tag::abc);
    mm->out_md = z_md;
  } else {
    mm->a_md = memory::desc({36, c, tiles}, f32, memory::dims{c, 1, 36 * c});
    mm->b_md = z_md;
    mm->out_md = memory::desc({36, c, o}, f32, tag::abc);
  }
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto pd = dnnl::matmul::primitive_desc(Engine(), mm->a_md, mm->b_md, mm->out_md, attr);
  mm->prim = dnnl::matmul(pd);
  mm->scratch_md = pd.scratchpad_desc();
  return mm;
}

// kind 3: out y = conv(a x, b w); kind 4: out dw from (a x, b dY).
ffi::Error RunWinograd(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out, int64_t kind) {
  const auto xd = a.dimensions(), bd = b.dimensions(), od = out->dimensions();
  const bool f32 = a.element_type() == ffi::DataType::F32 && b.element_type() == ffi::DataType::F32 &&
                   out->element_type() == ffi::DataType::F32;
  const auto& wd = kind == 3 ? bd : od;
  if (!f32 || xd.size() != 4 || wd.size() != 4 || wd[0] != 3 || wd[1] != 3 || xd[3] % kLanes || wd[3] % kLanes)
    return ffi::Error::InvalidArgument("Winograd: float32 NHWC activations and a 3x3 HWIO kernel, channels a "
                                       "multiple of 16, expected");
  const Tiles t(xd[0], xd[1], xd[2]);
  const int64_t c = xd[3], o = wd[3];
  const std::string key = std::to_string(kind) + "," + std::to_string(t.count) + "," + std::to_string(c) + "," +
                          std::to_string(o);
  const auto mm = Cache(matmul_cache, key, [&] { return BuildMatmul(kind, t.count, c, o); });
  // V, then Z (kind 4) or U (kind 3), then the product, then the matmul's scratchpad: 64-byte aligned parts of
  // one buffer per calling thread (thread_local: OpenMP's threads see it through these pointers).
  const auto floats = [](size_t bytes) { return (bytes + 63) / 64 * 16; };
  const size_t sizes[4] = {floats(mm->a_md.get_size()), floats(mm->b_md.get_size()), floats(mm->out_md.get_size()),
                           floats(mm->scratch_md.get_size())};
  thread_local std::vector<float> buf;
  buf.resize(sizes[0] + sizes[1] + sizes[2] + sizes[3] + 16);
  float* v = buf.data() + (16 - reinterpret_cast<uintptr_t>(buf.data()) / 4 % 16) % 16;
  float* rhs = v + sizes[0];
  float* prod = rhs + sizes[1];
  float* scratch = prod + sizes[2];
  const float* in = static_cast<const float*>(a.untyped_data());
  const float* other = static_cast<const float*>(b.untyped_data());
  InputTiles(in, t, c, v);
  if (kind == 3) KernelTransform(kG, other, c, o, rhs);
  else GradTiles(other, t, o, rhs);
  auto& eng = Engine();
  dnnl::stream stream(eng);
  mm->prim.execute(stream, {{DNNL_ARG_SRC, memory(mm->a_md, eng, v)},
                            {DNNL_ARG_WEIGHTS, memory(mm->b_md, eng, rhs)},
                            {DNNL_ARG_DST, memory(mm->out_md, eng, prod)},
                            {DNNL_ARG_SCRATCHPAD, memory(mm->scratch_md, eng, scratch)}});
  stream.wait();
  float* result = static_cast<float*>(out->untyped_data());
  if (kind == 3) OutputTiles(prod, t, o, result);
  else KernelTransform(kGT, prod, c, o, result);
  return ffi::Error::Success();
}

ffi::Error Conv(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out, int64_t kind,
                int64_t stride, int64_t pad_lo, int64_t pad_hi) {
  try {
    if (kind == 3 || kind == 4) return RunWinograd(a, b, out, kind);
    if (kind >= 0 && kind <= 2) return RunConv(a, b, out, kind, stride, pad_lo, pad_hi);
    return ffi::Error::InvalidArgument("kind must be 0 to 4");
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("oneDNN convolution failed: ") + e.what());
  }
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(DiffjaxOnednnConv, Conv,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("kind")
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_lo")
                                  .Attr<int64_t>("pad_hi"));

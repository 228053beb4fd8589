// oneDNN 2-D convolutions as an XLA FFI handler (diffjax/nn/conv.py builds and calls it): the forward pass, the
// data gradient and the weight gradient of a square-strided, symmetrically padded convolution of NHWC activations
// with an HWIO kernel, in float32 or bfloat16. Primitives are built once per shape and cached; oneDNN picks its
// own weight layout, into which the HWIO kernel is reordered per call (a few hundred kB).
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

std::mutex cache_mu;
std::unordered_map<std::string, std::shared_ptr<Cached>> cache;

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
  if (kind < 0 || kind > 2) return ffi::Error::InvalidArgument("kind must be 0, 1 or 2");
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
  std::shared_ptr<Cached> c;
  {
    std::lock_guard<std::mutex> lock(cache_mu);
    auto it = cache.find(key);
    if (it == cache.end())
      it = cache.emplace(key, Build(kind, t, {stride, stride}, {pad_lo, pad_lo}, {pad_hi, pad_hi})).first;
    c = it->second;
  }
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

ffi::Error Conv(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out, int64_t kind,
                int64_t stride, int64_t pad_lo, int64_t pad_hi) {
  try {
    return RunConv(a, b, out, kind, stride, pad_lo, pad_hi);
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

// oneDNN 2-D convolutions as an XLA FFI handler (diffjax/nn/conv.py builds and calls it): the forward pass, the
// data gradient and the weight gradient of a square-strided, symmetrically padded convolution of NHWC activations
// with an HWIO kernel, in float32 or bfloat16. Primitives are built once per shape and cached; oneDNN picks its
// own weight layout, into which the HWIO kernel is reordered per call (a few hundred kB).
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

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

memory::data_type DnnlType(ffi::DataType t) {
  return t == ffi::DataType::BF16 ? memory::data_type::bf16 : memory::data_type::f32;
}

struct Cached {
  dnnl::primitive prim;
  memory::desc a_md, b_md, out_md;  // the primitive's own layouts of its two inputs and its output
  memory::desc scratch_md;
};

std::mutex cache_mu;
std::unordered_map<std::string, std::shared_ptr<Cached>> cache;

// kind 0: out = conv(a = src NHWC, b = weights HWIO); 1: out = d src from (a = d dst, b = weights);
// 2: out = d weights HWIO from (a = src, b = d dst).
std::shared_ptr<Cached> Build(int64_t kind, memory::dims src, memory::dims wei, memory::dims dst,
                              memory::dims strides, memory::dims pad_l, memory::dims pad_r,
                              memory::data_type ta, memory::data_type tb, memory::data_type tout) {
  auto& eng = Engine();
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  memory::data_type t_src = kind == 1 ? tout : ta;
  memory::data_type t_wei = kind == 2 ? tout : tb;
  memory::data_type t_dst = kind == 0 ? tout : (kind == 1 ? ta : tb);
  auto src_md = memory::desc(src, t_src, tag::nhwc);
  auto dst_md = memory::desc(dst, t_dst, tag::nhwc);
  auto wei_any = memory::desc(wei, t_wei, tag::any);
  auto fwd_pd = dnnl::convolution_forward::primitive_desc(
      eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src_md, wei_any, dst_md,
      strides, pad_l, pad_r, attr);
  auto c = std::make_shared<Cached>();
  if (kind == 0) {
    c->prim = dnnl::convolution_forward(fwd_pd);
    c->a_md = fwd_pd.src_desc(); c->b_md = fwd_pd.weights_desc(); c->out_md = fwd_pd.dst_desc();
    c->scratch_md = fwd_pd.scratchpad_desc();
  } else if (kind == 1) {
    auto pd = dnnl::convolution_backward_data::primitive_desc(
        eng, dnnl::algorithm::convolution_direct, src_md, wei_any, dst_md, strides, pad_l, pad_r, fwd_pd, attr);
    c->prim = dnnl::convolution_backward_data(pd);
    c->a_md = pd.diff_dst_desc(); c->b_md = pd.weights_desc(); c->out_md = pd.diff_src_desc();
    c->scratch_md = pd.scratchpad_desc();
  } else {
    auto pd = dnnl::convolution_backward_weights::primitive_desc(
        eng, dnnl::algorithm::convolution_direct, src_md, wei_any, dst_md, strides, pad_l, pad_r, fwd_pd, attr);
    c->prim = dnnl::convolution_backward_weights(pd);
    c->a_md = pd.src_desc(); c->b_md = pd.diff_dst_desc(); c->out_md = pd.diff_weights_desc();
    c->scratch_md = pd.scratchpad_desc();
  }
  return c;
}

ffi::Error RunConv(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out, int64_t kind,
                int64_t stride, int64_t pad_lo, int64_t pad_hi) {
  auto da = a.dimensions(), db = b.dimensions(), dout = out->dimensions();
  if (da.size() != 4 || db.size() != 4 || dout.size() != 4) return ffi::Error::InvalidArgument("rank 4 expected");
  // logical oneDNN dims: src (N, C, H, W), weights (O, I, KH, KW), dst (N, O, H, W)
  auto nhwc = [](auto d) { return memory::dims{d[0], d[3], d[1], d[2]}; };
  auto hwio = [](auto d) { return memory::dims{d[3], d[2], d[0], d[1]}; };
  memory::dims src, wei, dst;
  if (kind == 0) { src = nhwc(da); wei = hwio(db); dst = nhwc(dout); }
  else if (kind == 1) { dst = nhwc(da); wei = hwio(db); src = nhwc(dout); }
  else { src = nhwc(da); dst = nhwc(db); wei = hwio(dout); }
  memory::dims strides{stride, stride}, pad_l{pad_lo, pad_lo}, pad_r{pad_hi, pad_hi};
  auto ta = DnnlType(a.element_type()), tb = DnnlType(b.element_type()), tout = DnnlType(out->element_type());
  std::string key = std::to_string(kind) + "|" + std::to_string(stride) + "|" + std::to_string(pad_lo) + "|" +
                    std::to_string(pad_hi) + "|" + std::to_string(int(ta)) + std::to_string(int(tb)) +
                    std::to_string(int(tout));
  for (auto v : {src, wei, dst})
    for (auto x : v) key += "," + std::to_string(x);
  std::shared_ptr<Cached> c;
  {
    std::lock_guard<std::mutex> lock(cache_mu);
    auto it = cache.find(key);
    if (it == cache.end()) it = cache.emplace(key, Build(kind, src, wei, dst, strides, pad_l, pad_r, ta, tb, tout)).first;
    c = it->second;
  }
  auto& eng = Engine();
  dnnl::stream stream(eng);
  // user layouts: activations NHWC, weights HWIO
  memory::desc a_user, b_user, out_user;
  if (kind == 0) {
    a_user = memory::desc(src, ta, tag::nhwc); b_user = memory::desc(wei, tb, tag::hwio);
    out_user = memory::desc(dst, tout, tag::nhwc);
  } else if (kind == 1) {
    a_user = memory::desc(dst, ta, tag::nhwc); b_user = memory::desc(wei, tb, tag::hwio);
    out_user = memory::desc(src, tout, tag::nhwc);
  } else {
    a_user = memory::desc(src, ta, tag::nhwc); b_user = memory::desc(dst, tb, tag::nhwc);
    out_user = memory::desc(wei, tout, tag::hwio);
  }
  memory a_mem(a_user, eng, a.untyped_data()), b_mem(b_user, eng, b.untyped_data());
  memory out_mem(out_user, eng, out->untyped_data());
  auto prep = [&](memory& m, const memory::desc& want) {
    if (m.get_desc() == want) return m;
    memory r(want, eng);
    dnnl::reorder(m, r).execute(stream, m, r);
    return r;
  };
  memory a_p = prep(a_mem, c->a_md), b_p = prep(b_mem, c->b_md);
  memory out_p = out_mem.get_desc() == c->out_md ? out_mem : memory(c->out_md, eng);
  thread_local std::vector<uint8_t> scratch;
  if (scratch.size() < c->scratch_md.get_size()) scratch.resize(c->scratch_md.get_size());
  memory scratch_mem(c->scratch_md, eng, scratch.data());
  std::unordered_map<int, memory> args{{DNNL_ARG_SCRATCHPAD, scratch_mem}};
  if (kind == 0) { args[DNNL_ARG_SRC] = a_p; args[DNNL_ARG_WEIGHTS] = b_p; args[DNNL_ARG_DST] = out_p; }
  else if (kind == 1) { args[DNNL_ARG_DIFF_DST] = a_p; args[DNNL_ARG_WEIGHTS] = b_p; args[DNNL_ARG_DIFF_SRC] = out_p; }
  else { args[DNNL_ARG_SRC] = a_p; args[DNNL_ARG_DIFF_DST] = b_p; args[DNNL_ARG_DIFF_WEIGHTS] = out_p; }
  c->prim.execute(stream, args);
  if (out_p != out_mem) dnnl::reorder(out_p, out_mem).execute(stream, out_p, out_mem);
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

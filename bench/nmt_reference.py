#!/usr/bin/env python3
"""PyTorch reference of varattn's NMT model and four of its objectives, for `varattn bench`.

Written from the equations of Deng et al. (2018) as docs/papers.md states them, not from
varattn's code:

  encoder    x~ = BiLSTM(emb(x))                                  (stacked, bidirectional)
  decoder    h_t = LSTM([emb(y_{t-1}); c_{t-1}], h_{t-1})          (input feeding, stacked cells)
  prior      p(z_t = i) = softmax_i(v^T tanh(W_h h_t + W_x x~_i + b))
  context    c_t = sum_i p_i x~_i
  output     f(x, i) = softmax(W_o tanh(U h_t + V x~_i + b_u) + b_o)
  posterior  q(z_t = i | x, y) = softmax_i(s_t^T M u_i),  s = BiLSTM(emb(y)), u = BiLSTM(emb(x))

Objectives (loss per target token, summed over the batch and divided by its tokens):
  soft        -log f(x, E_p[z])             (context sum_i p_i x~_i inside the output layer)
  exact       -log sum_i p_i f(x, i)[y]     (enumerates the S alignments: [B, T, S, V] logits)
  var-enum    -(sum_i q_i log f(x, i)[y] - KL(q || p))
  var-sample  REINFORCE with one z ~ q and the baseline log f(x, E_p[z]), plus KL(q || p)

Each training step is forward + backward + Adam (global-norm clipping at 5) on a batch of random
token ids of fixed lengths (throughput does not depend on the ids). Prints one JSON object per
objective on stdout: target tokens per second and step-time percentiles.
"""
import argparse
import json
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


NEG = -1e30  # score of a padded source position


def run_lstm(lstm, xs, lengths):
    """Outputs [B, L, D] of a batch-first nn.LSTM; each row read within its length if given."""
    if lengths is None:
        return lstm(xs)[0]
    packed = nn.utils.rnn.pack_padded_sequence(xs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    return nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=xs.shape[1])[0]


class Model(nn.Module):
    def __init__(self, a, paper_output=False):
        super().__init__()
        e2 = 2 * a.enc_hidden
        self.a = a
        self.src_emb = nn.Embedding(a.vocab, a.emb)
        self.tgt_emb = nn.Embedding(a.vocab, a.emb)
        self.encoder = nn.LSTM(a.emb, a.enc_hidden, a.enc_layers, batch_first=True, bidirectional=True,
                               dropout=a.dropout if a.enc_layers > 1 else 0.0)
        self.cells = nn.ModuleList(
            [nn.LSTMCell(a.emb + e2 if l == 0 else a.dec_hidden, a.dec_hidden) for l in range(a.dec_layers)])
        self.att_h = nn.Linear(a.dec_hidden, a.attn_hidden, bias=False)
        self.att_x = nn.Linear(e2, a.attn_hidden, bias=True)
        self.att_v = nn.Linear(a.attn_hidden, 1, bias=False)
        if paper_output:
            # f(x, i) = softmax(W_o tanh(W_c [h_t; x~_i]) + b_o), W_c one matrix over the concatenation
            self.out_c = nn.Linear(a.dec_hidden + e2, a.out_hidden, bias=True)
        else:
            # the same layer as U h_t + V x~_i + b (W_c = [U V]), so that V x~ is computed once
            self.out_h = nn.Linear(a.dec_hidden, a.out_hidden, bias=True)
            self.out_x = nn.Linear(e2, a.out_hidden, bias=False)
        self.out_o = nn.Linear(a.out_hidden, a.vocab)
        self.inf_src = nn.LSTM(a.emb, a.inf_hidden, 1, batch_first=True, bidirectional=True)
        self.inf_tgt = nn.LSTM(a.emb, a.inf_hidden, 1, batch_first=True, bidirectional=True)
        self.bilinear = nn.Linear(2 * a.inf_hidden, 2 * a.inf_hidden, bias=False)
        for p in self.parameters():
            nn.init.uniform_(p, -a.init, a.init)

    def forward(self, src, tgt_in, tgt_out, need_q, src_mask=None, tgt_mask=None):
        """h_t [B, T, H], x~ [B, S, 2E], prior scores [B, T, S] and (need_q) posterior scores.

        With masks (1 real, 0 padding, padding at the end of rows), the BiLSTMs read each row
        within its length (packed sequences; outputs 0 at padding) and padded positions get the
        score NEG (probability 0)."""
        a = self.a
        drop = lambda x: F.dropout(x, a.dropout, self.training)
        src_len = None if src_mask is None else src_mask.sum(1).long()
        tgt_len = None if tgt_mask is None else tgt_mask.sum(1).long()
        pad = lambda sc: sc if src_mask is None else sc.masked_fill(  # sc [B, S] or [B, T, S]
            src_mask.reshape(src_mask.shape[0], *([1] * (sc.dim() - 2)), -1) == 0, NEG)
        x = drop(run_lstm(self.encoder, drop(self.src_emb(src)), src_len))  # [B, S, 2E]
        keys = self.att_x(x)  # [B, S, A]
        B, T = tgt_in.shape
        state = [(x.new_zeros(B, a.dec_hidden), x.new_zeros(B, a.dec_hidden)) for _ in self.cells]
        feed = x.new_zeros(B, x.shape[2])
        emb = drop(self.tgt_emb(tgt_in))
        hs, scores = [], []
        for t in range(T):
            inp = torch.cat([emb[:, t], feed], 1)
            for l, cell in enumerate(self.cells):
                if l > 0:
                    inp = drop(inp)
                state[l] = cell(inp, state[l])
                inp = state[l][0]
            h = inp
            sc = pad(self.att_v(torch.tanh(keys + self.att_h(h).unsqueeze(1))).squeeze(-1))  # [B, S]
            feed = torch.bmm(F.softmax(sc, -1).unsqueeze(1), x).squeeze(1)
            hs.append(h)
            scores.append(sc)
        h = drop(torch.stack(hs, 1))  # [B, T, H]
        prior_scores = torch.stack(scores, 1)  # [B, T, S]
        q_scores = None
        if need_q:
            u = run_lstm(self.inf_src, self.src_emb(src), src_len)
            s = run_lstm(self.inf_tgt, self.tgt_emb(tgt_out), tgt_len)
            q_scores = pad(torch.bmm(self.bilinear(s), u.transpose(1, 2)))  # [B, T, S]
        return h, x, prior_scores, q_scores

    def gold_log_f(self, pre, gold):
        """log f[y] for output pre-activations [..., O] and gold ids [...]."""
        return F.log_softmax(self.out_o(torch.tanh(pre)), -1).gather(-1, gold.unsqueeze(-1)).squeeze(-1)


def loss_of(model, objective, batch):
    src, tgt_in, tgt_out = batch
    need_q = objective in ("var-enum", "var-sample")
    h, x, ps, qs = model(src, tgt_in, tgt_out, need_q)
    oq, ok = model.out_h(h), model.out_x(x)  # [B,T,O], [B,S,O]
    log_p = F.log_softmax(ps, -1)
    p = log_p.exp()
    S = ps.shape[2]
    if objective == "soft":
        nll = -model.gold_log_f(oq + torch.bmm(p, ok), tgt_out)
        return nll.sum() / nll.numel()
    log_f_all = lambda: model.gold_log_f(oq.unsqueeze(2) + ok.unsqueeze(1),
                                         tgt_out.unsqueeze(2).expand(-1, -1, S))  # [B,T,S]
    if objective == "exact":
        nll = -torch.logsumexp(log_p + log_f_all(), -1)
        return nll.sum() / nll.numel()
    log_q = F.log_softmax(qs, -1)
    q = log_q.exp()
    kl = (q * (log_q - log_p)).sum(-1)  # [B,T]
    if objective == "var-enum":
        return (-(q * log_f_all()).sum(-1) + kl).sum() / kl.numel()
    if objective == "var-sample":
        z = torch.multinomial(q.detach().reshape(-1, S), 1).reshape(q.shape[:2])  # [B,T]
        picked = torch.gather(ok, 1, z.unsqueeze(-1).expand(-1, -1, ok.shape[2]))  # [B,T,O]
        lf = model.gold_log_f(oq + picked, tgt_out)
        baseline = model.gold_log_f(oq + torch.bmm(p, ok), tgt_out).detach()
        log_qz = log_q.gather(-1, z.unsqueeze(-1)).squeeze(-1)
        surrogate = lf + (lf.detach() - baseline) * log_qz
        return (-surrogate + kl).sum() / kl.numel()
    raise ValueError(f"unknown objective {objective}")


# ---------------------------------------------------------------------------------------------
# Parity with varattn at shared weights (`varattn parity`, bench/parity.sh).

ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}


def st_load(path):
    """The tensors and header metadata of a safetensors file (little-endian, as varattn writes)."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for k, v in header.items():
        if v["dtype"] not in ST_DTYPES:
            continue  # e.g. optimiser counters of a checkpoint
        b, e = v["data_offsets"]
        dt = ST_DTYPES[v["dtype"]]
        buf = bytearray(data[8 + n + b:8 + n + e])
        t = torch.frombuffer(buf, dtype=dt) if buf else torch.empty(0, dtype=dt)
        out[k] = t.reshape(v["shape"])
    return out, meta


def st_save(path, tensors):
    """Writes f64 tensors as a safetensors file (temporary name, then renamed)."""
    import ctypes
    import os
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        t = t.detach().to(torch.float64).contiguous().cpu()
        b = ctypes.string_at(t.data_ptr(), t.numel() * 8) if t.numel() else b""
        header[k] = {"dtype": "F64", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))
    os.replace(tmp, path)


def param_map(model, cfg):
    """varattn's parameter names -> (torch parameter, index into it). Layouts:

      src_emb.weight, tgt_emb.weight [V, E]       -> nn.Embedding.weight (same layout)
      encoder.l{l}.{fwd,bwd}.{w_ih,w_hh,b_ih,b_hh} -> nn.LSTM weight_ih_l{l}[_reverse], weight_hh_..,
                                                     bias_ih_.., bias_hh_.. (gates i, f, g, o in both;
                                                     both biases kept, as PyTorch has them)
      decoder.l{l}.{w_ih,w_hh,b_ih,b_hh}           -> cells[l] (nn.LSTMCell) weight_ih, weight_hh, bias_ih, bias_hh
      attention.w_h.weight [A, H]                  -> att_h.weight      (W_h)
      attention.w_x.weight [A, 2E], .bias [A]      -> att_x.weight/bias (W_x, b)
      attention.v.weight [1, A]                    -> att_v.weight      (v)
      output.w_ch.weight [O, H], output.w_ch.bias  -> out_c.weight[:, :H], out_c.bias  (W_c = [U V])
      output.w_cx.weight [O, 2E]                   -> out_c.weight[:, H:]
      output.w_o.weight [V, O], output.w_o.bias    -> out_o.weight/bias (W_o, b_o)
      inference.{src,tgt}.l0.{fwd,bwd}.*           -> inf_src / inf_tgt (nn.LSTM, as the encoder)
      inference.bilinear.weight [2I, 2I]           -> bilinear.weight   (score s^T M^T u, M this matrix)
    Every Linear is y = x W^T + b in both, so no matrix is transposed."""
    m, H = model, cfg["dec_hidden"]
    out = {"src_emb.weight": (m.src_emb.weight, ()), "tgt_emb.weight": (m.tgt_emb.weight, ())}

    def lstm(prefix, mod, layers):
        for l in range(layers):
            for d, suffix in (("fwd", ""), ("bwd", "_reverse")):
                for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
                    out[f"{prefix}.l{l}.{d}.{ours}"] = (getattr(mod, f"{theirs}_l{l}{suffix}"), ())

    lstm("encoder", m.encoder, cfg["enc_layers"])
    for l, cell in enumerate(m.cells):
        for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
            out[f"decoder.l{l}.{ours}"] = (getattr(cell, theirs), ())
    out.update({
        "attention.w_h.weight": (m.att_h.weight, ()),
        "attention.w_x.weight": (m.att_x.weight, ()),
        "attention.w_x.bias": (m.att_x.bias, ()),
        "attention.v.weight": (m.att_v.weight, ()),
        "output.w_ch.weight": (m.out_c.weight, (slice(None), slice(0, H))),
        "output.w_ch.bias": (m.out_c.bias, ()),
        "output.w_cx.weight": (m.out_c.weight, (slice(None), slice(H, None))),
        "output.w_o.weight": (m.out_o.weight, ()),
        "output.w_o.bias": (m.out_o.bias, ()),
    })
    lstm("inference.src", m.inf_src, 1)
    lstm("inference.tgt", m.inf_tgt, 1)
    out["inference.bilinear.weight"] = (m.bilinear.weight, ())
    return out


def parity_loss(model, objective, src, tgt_in, tgt_out, smask, tmask, z=None):
    """The objective's loss, -(sum over real target tokens of the per-token surrogate) / tokens,
    from the equations of Deng et al. (2018), docs/papers.md section 1:

      f(x, i)     = softmax(W_o tanh(W_c [h_t; x~_i]) + b_o)[y_t]   (one output layer for every row)
      soft        log f(x, E_p[z]), the context sum_i p_i x~_i in place of x~_i
      exact       log sum_i p_i f(x, i)
      hard-enum   sum_i p_i log f(x, i)
      var-enum    sum_i q_i log f(x, i) - KL(q || p)
      hard-sample 1/K sum_k [log f(x, z_k) + sg(log f(x, z_k) - b_t) log p(z_k)],  z_k ~ p (given)
      var-sample  1/K sum_k [log f(x, z_k) + sg(log f(x, z_k) - b_t) log q(z_k)] - KL(q || p), z_k ~ q
    with the REINFORCE baseline b_t = sg(log f(x, E_p[z])), the soft score of the same step."""
    need_q = objective.startswith("var-")
    h, x, ps, qs = model(src, tgt_in, tgt_out, need_q, smask, tmask)  # [B,T,H], [B,S,E], [B,T,S]
    B, T, S = ps.shape
    log_p = F.log_softmax(ps, -1)
    p = log_p.exp()

    def log_f(ctx, gold):
        """log f[y] for contexts ctx [B, T, ..., E] beside h_t."""
        hb = h.reshape(B, T, *([1] * (ctx.dim() - 3)), -1).expand(*ctx.shape[:-1], -1)
        logits = model.out_o(torch.tanh(model.out_c(torch.cat([hb, ctx], -1))))
        return F.log_softmax(logits, -1).gather(-1, gold.unsqueeze(-1)).squeeze(-1)

    soft_ctx = torch.bmm(p, x)  # [B, T, E]
    every = lambda: log_f(x.unsqueeze(1).expand(B, T, S, x.shape[2]), tgt_out.unsqueeze(2).expand(B, T, S))  # [B,T,S]
    if need_q:
        log_q = F.log_softmax(qs, -1)
        q = log_q.exp()
        kl = (q * (log_q - log_p)).sum(-1)
    if objective == "soft":
        per_token = log_f(soft_ctx, tgt_out)
    elif objective == "exact":
        per_token = torch.logsumexp(log_p + every(), -1)
    elif objective == "hard-enum":
        per_token = (p * every()).sum(-1)
    elif objective == "var-enum":
        per_token = (q * every()).sum(-1) - kl
    elif objective in ("hard-sample", "var-sample"):
        baseline = log_f(soft_ctx.detach(), tgt_out).detach()
        log_pi = log_p if objective == "hard-sample" else log_q
        terms = []
        for zk in z:  # [B, T]
            picked = torch.gather(x, 1, zk.unsqueeze(-1).expand(B, T, x.shape[2]))  # x~_{z_t}
            lf = log_f(picked, tgt_out)
            terms.append(lf + (lf.detach() - baseline) * log_pi.gather(-1, zk.unsqueeze(-1)).squeeze(-1))
        per_token = torch.stack(terms).mean(0) - (kl if need_q else 0)
    else:
        raise ValueError(f"parity: the reference has no objective `{objective}`")
    return -(per_token * tmask).sum() / tmask.sum()


def parity_main(inp, outp):
    """Reads a case written by `varattn parity` (weights, batch, draws), writes the reference's
    loss and every parameter gradient under varattn's names (f64)."""
    torch.set_default_dtype(torch.float64)
    t, meta = st_load(inp)
    info = json.loads(meta["varattn.parity"])
    cfg = dict(info["model"], vocab=info["vocab"], dropout=0.0)
    if info["model"]["dropout"] != 0.0:
        sys.exit("parity: the case was exported with dropout; the reference runs without")
    model = Model(argparse.Namespace(**cfg), paper_output=True).double()
    model.eval()
    names = param_map(model, cfg)
    with_q = {k for k in t if k.startswith("param.inference.")}
    wanted = {k for k in names if not k.startswith("inference.") or with_q}
    given = {k[len("param."):] for k in t if k.startswith("param.")}
    if given != wanted:
        sys.exit(f"parity: parameters in {inp} and the reference differ: only in the file {sorted(given - wanted)}, "
                 f"only in the reference {sorted(wanted - given)}")
    covered = {id(p): 0 for p in model.parameters()}
    with torch.no_grad():
        for k in wanted:
            param, idx = names[k]
            if param[idx].shape != t["param." + k].shape:
                sys.exit(f"parity: {k} has shape {list(t['param.' + k].shape)}, the reference's {list(param[idx].shape)}")
            param[idx] = t["param." + k].to(torch.float64)
            covered[id(param)] += param[idx].numel()
    used = [p for p in model.parameters() if covered[id(p)]]
    for p in used:
        assert covered[id(p)] == p.numel(), "a parameter is only partly set"
    kind = info["objective"]["kind"]
    z = t["sample.z"] if "sample.z" in t else None
    mask = lambda k: t[k].to(torch.float64)
    loss = parity_loss(model, kind, t["batch.src"], t["batch.tgt_in"], t["batch.tgt_out"],
                       mask("batch.src_mask"), mask("batch.tgt_mask"), z)
    grads = torch.autograd.grad(loss, used, allow_unused=True)
    by_param = {id(p): (g if g is not None else torch.zeros_like(p)) for p, g in zip(used, grads)}
    out = {"loss": loss.detach()}
    for k in wanted:
        param, idx = names[k]
        out["grad." + k] = by_param[id(param)][idx]
    st_save(outp, out)


def lstm_step_ms(batch, steps, dim, reps, device="cpu"):
    """Median ms of one nn.LSTM(dim, dim) training step: forward, backward of the summed outputs, Adam."""
    dev = torch.device(device)
    lstm = nn.LSTM(dim, dim, 1, batch_first=True).to(dev)
    opt = torch.optim.Adam(lstm.parameters())
    x = (torch.rand(batch, steps, dim) * 2 - 1).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    for r in range(reps + 1):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        lstm(x)[0].sum().backward()
        opt.step()
        sync()
        if r > 0:
            times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[len(times) // 2]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "parity":
        # parity IN OUT
        parity_main(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "lstm":
        # lstm BATCH STEPS DIM REPS THREADS [DEVICE]
        b, t, d, reps, threads = map(int, sys.argv[2:7])
        device = sys.argv[7] if len(sys.argv) > 7 else "cpu"
        if threads > 0:
            torch.set_num_threads(threads)
        torch.manual_seed(3435)
        print(json.dumps({"pytorch_ms": lstm_step_ms(b, t, d, reps, device), "implementation": f"pytorch {torch.__version__}"}))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for k in ["vocab", "emb", "enc_hidden", "enc_layers", "dec_hidden", "dec_layers", "attn_hidden", "out_hidden",
              "inf_hidden", "batch", "src_len", "tgt_len", "steps", "warmup", "threads", "seed"]:
        ap.add_argument("--" + k.replace("_", "-"), type=int, required=k not in ("threads", "seed"),
                        default={"threads": 0, "seed": 3435}.get(k))
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--init", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--objectives", default="soft,exact,var-enum,var-sample")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    for objective in a.objectives.split(","):
        model = Model(a).to(dev)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
        g = torch.Generator().manual_seed(a.seed)
        mk = lambda n: torch.randint(4, a.vocab, (a.batch, n), generator=g).to(dev)
        times = []
        for step in range(a.warmup + a.steps):
            batch = (mk(a.src_len), mk(a.tgt_len), mk(a.tgt_len))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = loss_of(model, objective, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if step >= a.warmup:
                times.append(time.perf_counter() - t0)
            if not torch.isfinite(loss):
                sys.exit(f"{objective}: non-finite loss at step {step}")
        times.sort()
        pct = lambda q: times[min(len(times) - 1, int(q * len(times)))]
        tokens = a.batch * a.tgt_len
        print(json.dumps({
            "implementation": f"pytorch {torch.__version__}",
            "objective": objective,
            "steps": len(times),
            "tokens_per_step": tokens,
            "tokens_per_second": tokens * len(times) / sum(times),
            "step_ms_p50": 1e3 * pct(0.5),
            "step_ms_p90": 1e3 * pct(0.9),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads(),
        }), flush=True)


if __name__ == "__main__":
    main()

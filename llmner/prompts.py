"""Prompt construction, identical at training and inference time.

Layout (chat template of the model): a system message with the instruction and the entity types
with their definitions, then a user message holding only the text. Everything before the text is
the same for every chunk of a schema, so its KV cache is computed once and shared
(``PromptBuilder.split``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from llmner.errors import ConfigError
from llmner.schema import EntitySchema

Definitions = Literal["compact", "full", "none"]

_INSTRUCTIONS = {
    "inline": {
        "en": (
            "You are a biomedical named entity tagger. Copy the user's text exactly, character for character, "
            "and wrap every entity mention in tags named after its type, e.g. <{ex}>mention</{ex}>. "
            "Mentions may nest. Write &amp;, &lt; and &gt; for the characters &, < and >. Output nothing else."
        ),
        "zh": (
            "你是医学命名实体标注器。逐字复制用户的文本，并用以类型命名的标签包住每个实体，例如 <{ex}>实体</{ex}>。"
            "实体可以嵌套。字符 &、<、> 分别写作 &amp;、&lt;、&gt;。不要输出其他内容。"
        ),
    },
    "lines": {
        "en": (
            "You are a biomedical named entity tagger. For each entity type present in the user's text, write one line: "
            "the type, a colon, two spaces, then the full text with [ and ] around each mention of that type "
            "(nested brackets for nested mentions). Output nothing else."
        ),
        "zh": "你是医学命名实体标注器。对文本中出现的每种实体类型写一行：类型、冒号、两个空格，然后是完整文本，用 [ 和 ] 标出该类型的每个实体（嵌套实体用嵌套括号）。不要输出其他内容。",
    },
    "json": {
        "en": (
            'You are a biomedical named entity tagger. List every entity mention in the user\'s text as a JSON array '
            'of objects {"entity": type, "name": mention}, in text order; write [] when there is none. Output nothing else.'
        ),
        "zh": '你是医学命名实体标注器。按文本顺序把每个实体写成 JSON 数组 [{"entity": 类型, "name": 实体}]；没有实体时写 []。不要输出其他内容。',
    },
}
_TYPES_HEADER = {"en": "Entity types:", "zh": "实体类型："}


@dataclass(frozen=True, slots=True)
class PromptConfig:
    codec: str = "inline"
    definitions: Definitions = "compact"   # compact: first clause of each definition; full; none: names only
    compact_chars: int = 80

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptConfig:
        return cls(**data)


class PromptBuilder:
    """Builds chat messages and prompt strings for one (schema, config)."""

    def __init__(self, config: PromptConfig | None = None) -> None:
        self.config = config or PromptConfig()
        if self.config.codec not in _INSTRUCTIONS:
            raise ConfigError(f"unknown codec {self.config.codec!r} for prompts (expected one of {sorted(_INSTRUCTIONS)})")
        if self.config.definitions not in ("compact", "full", "none"):
            raise ConfigError(f"unknown definitions mode {self.config.definitions!r} (compact, full or none)")

    def system_message(self, schema: EntitySchema) -> str:
        lang = schema.language
        instruction = _INSTRUCTIONS[self.config.codec][lang].format(ex=schema.types[0].name)
        lines = [instruction, _TYPES_HEADER[lang]]
        for t in schema.types:
            if self.config.definitions == "none":
                lines.append(f"- {t.name}")
                continue
            definition = t.definition
            if self.config.definitions == "compact" and len(definition) > self.config.compact_chars:
                cut = definition[: self.config.compact_chars]
                definition = cut[: cut.rfind(" ")] if " " in cut else cut
            lines.append(f"- {t.name}: {definition}")
        return "\n".join(lines)

    def messages(self, text: str, schema: EntitySchema, target: str | None = None) -> list[dict[str, str]]:
        msgs = [
            {"role": "system", "content": self.system_message(schema)},
            {"role": "user", "content": text},
        ]
        if target is not None:
            msgs.append({"role": "assistant", "content": target})
        return msgs

    def prompt(self, tokenizer: Any, text: str, schema: EntitySchema) -> str:
        """The full prompt string, ending where the model starts writing its answer."""
        prefix, suffix = self.split(tokenizer, text, schema)
        return prefix + text + suffix

    def split(self, tokenizer: Any, text: str, schema: EntitySchema) -> tuple[str, str]:
        """(prefix, suffix) around the text: the prefix is shared by every chunk of ``schema``."""
        sentinel = "\u0000TEXT\u0000"
        rendered = _render(tokenizer, self.messages(sentinel, schema))
        if rendered.count(sentinel) != 1:
            raise ConfigError("the tokenizer's chat template must contain the user message exactly once")
        prefix, suffix = rendered.split(sentinel)
        return prefix, suffix


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Models without a chat template (e.g. tiny test models): a plain, explicit layout.
    parts = [f"<|{m['role']}|>\n{m['content']}\n" for m in messages]
    return "".join(parts) + "<|assistant|>\n"

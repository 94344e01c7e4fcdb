"""The `sentiment` step: snownlp's score of the customer's words, kept unchanged in
`sentiment.snownlp`, and a first financial-domain score in `sentiment.score`.

snownlp was trained on shopping reviews, so banking words mean little to it
("冻结", "扣款" read as neutral) and plain questions often read as very negative.
Until a domain model replaces it, `score` corrects it in two documented ways:

1. financial words: each distinct negative word (盗刷, 冻结, 扣款 …) lowers the text
   score by `word_weight`, each positive one (到账快, 解决了, 耐心 …) raises it; at
   most `max_word_shift` in total; a word right after 不/没/未 is not counted
   ("不满意" is not "满意");
2. strong cue words override snownlp's tone (it reads "一直登录不上" or "转账无法成功" as
   positive): a strong negative word (登不上, 打不开, 闪退, 垃圾, 差评 …) caps the score
   just below `negative_below`; otherwise a strong positive word (好用, 好评, 点赞 …)
   lifts it just above `positive_above`. Negated words (不好用) do not count, and
   after a contrast word (但是, 可是, 不过 …) only the words that follow it count;
3. a question without a negative word is neutral, not negative (snownlp scores
   「请问信用卡年费怎么收取？」 0.003): its score is raised to 0.5;
4. the star rating, where the channel has one:
   score = (1 - rating_weight) * text score + rating_weight * (rating - 1) / 4
   (default weight 0.5: the average of the two).

`label` is negative below `negative_below` (0.4), positive above `positive_above`
(0.6), else neutral. Empty text scores 0.5 without calling snownlp (a bare star
rating still counts). Only the first `max_chars` characters are scored: snownlp
is slow pure Python, and the start of a message carries its tone.

snownlp is imported on first use, once per worker process (it loads its models,
about two seconds), never when this module is imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from ingest.model import FeedbackRecord, Reason
from ingest.model import Sentiment as SentimentValue
from processors import step_options
from processors.rules import Group, Matcher


def _split(words: str) -> tuple[str, ...]:
    return tuple(words.split())


NEGATIVE_WORDS = _split("""
    盗刷 诈骗 被骗 冻结 锁定 扣款 扣费 乱收费 亏损 亏了 拒赔 逾期 催收 投诉 销户 闪退 失败
    没到账 误导 坑 垃圾 差评 难用 卡顿 麻烦 烦 无语 强制 太慢 恶心 不好 退保 不及时
""")
POSITIVE_WORDS = _split("""
    到账快 秒到账 解决了 处理及时 很及时 专业 耐心 细心 贴心 感谢 点赞 方便 好用 给力 满意 靠谱
    不错 很好 推荐 放心 快捷 好评 棒 赞
""")
STRONG_NEGATIVE_WORDS = _split("""
    登不上 登不进 登录不了 登陆不了 登录不上 登陆不上 无法登录 无法登陆 打不开 闪退 卡死 白屏
    进不去 用不了 不能用 无法使用 转不了 无法成功 失败 盗刷 被骗 冻结 没到账 不吐钞
    垃圾 辣鸡 差评 太差 差劲 难用 不好用 恶心 坑人 太烂 最烂 气死 投诉
""")
STRONG_POSITIVE_WORDS = _split("""
    好用 好评 点赞 很方便 非常好 很好 不错 很棒 太棒 推荐 感谢 满意 给力 赞 放心
""")
_CONTRAST = re.compile(r"但是|可是|不过|然而|但")
_QUESTION = re.compile(r"[?？]|吗|请问|想问|问一下|能否|是否|可以.{0,8}么|有没有")
_NEGATORS = ("不", "没", "未", "别")

_score_text: Callable[[str], float] | None = None


def model_cache_dir() -> str:
    """Where the compact snownlp arrays are cached (keyed by the model file, so an
    upgrade of snownlp invalidates it): $FEEDBACK_MODEL_CACHE or ~/.cache/feedback-ingest."""
    configured = os.environ.get("FEEDBACK_MODEL_CACHE")
    return configured or os.path.join(os.path.expanduser("~"), ".cache", "feedback-ingest")


def snownlp_score(text: str) -> float:
    """snownlp's sentiment of `text` (0 negative .. 1 positive), bit-identical to
    `SnowNLP(text).sentiments` but ~11x faster (processors.fast_snownlp); loaded lazily."""
    global _score_text
    if _score_text is None:
        from processors.fast_snownlp import FastSentiment  # deferred: loads model arrays

        _score_text = FastSentiment(cache_dir=model_cache_dir()).score
    return _score_text(text)


@dataclass(frozen=True)
class SentimentOptions:
    negative_below: float = 0.4
    positive_above: float = 0.6
    rating_weight: float = 0.5
    word_weight: float = 0.1
    max_word_shift: float = 0.3
    max_chars: int = 2000
    negative_words: tuple[str, ...] = NEGATIVE_WORDS
    positive_words: tuple[str, ...] = POSITIVE_WORDS
    strong_negative_words: tuple[str, ...] = STRONG_NEGATIVE_WORDS
    strong_positive_words: tuple[str, ...] = STRONG_POSITIVE_WORDS
    questions_neutral: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.negative_below <= self.positive_above <= 1:
            raise ValueError("need 0 <= negative_below <= positive_above <= 1")
        if not 0 <= self.rating_weight <= 1:
            raise ValueError("rating_weight must be within 0..1")
        if self.max_chars < 1:
            raise ValueError("max_chars must be at least 1")


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


class Sentiment:
    """snownlp score, financial-word layer, star rating, label."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = step_options(SentimentOptions, options, "sentiment")
        self._words = Matcher(
            [
                Group("negative", "负面词", self.options.negative_words),
                Group("positive", "正面词", self.options.positive_words),
                Group("strong_negative", "强负面词", self.options.strong_negative_words),
                Group("strong_positive", "强正面词", self.options.strong_positive_words),
            ],
            _NEGATORS,
            window=1,
        )

    def __call__(self, record: FeedbackRecord) -> FeedbackRecord:
        opts = self.options
        text = record.text.strip()[: opts.max_chars]
        notes: list[str] = []
        if text:
            raw = snownlp_score(text)
            notes.append(f"snownlp {raw:.2f}")
            if len(record.text.strip()) > opts.max_chars:
                notes.append(f"first {opts.max_chars} characters")
        else:
            raw = 0.5
            notes.append("empty text: 0.50")
        score = self._domain(text, raw + self._word_shift(text, notes), notes)
        if record.rating is not None:
            from_rating = (record.rating - 1) / 4
            score = (1 - opts.rating_weight) * score + opts.rating_weight * from_rating
            if not text:
                score = from_rating
            notes.append(f"rating {record.rating}★ = {from_rating:.2f}")
        score = round(_clamp(score), 4)
        label: Literal["negative", "neutral", "positive"] = (
            "negative"
            if score < opts.negative_below
            else "positive"
            if score > opts.positive_above
            else "neutral"
        )
        notes.append(f"score {score:.2f} → {label}")
        reason = Reason("sentiment", "; ".join(notes), 0.5)
        return replace(
            record,
            sentiment=SentimentValue(snownlp=raw, score=score, label=label),
            reasons=(*record.reasons, reason),
        )

    def _domain(self, text: str, score: float, notes: list[str]) -> float:
        """Rules 2 and 3 of the module docstring: strong cue words, then questions."""
        if not text:
            return score
        opts = self.options
        # 「虽然…但是…」: what follows the last contrast word carries the tone
        scan = self._words.scan(_CONTRAST.split(text)[-1] or text)
        strong_negative = scan.words("strong_negative")
        if strong_negative:
            capped = min(score, opts.negative_below - 0.05)
            notes.append(f"strong negative {' '.join(strong_negative)}: ≤ {capped:.2f}")
            return capped
        strong_positive = scan.words("strong_positive")
        if strong_positive and not scan.words("negative"):
            lifted = max(score, opts.positive_above + 0.05)
            notes.append(f"strong positive {' '.join(strong_positive)}: ≥ {lifted:.2f}")
            return lifted
        question = opts.questions_neutral and _QUESTION.search(text)
        if question and not scan.words("negative") and score < 0.5:
            notes.append("a question without negative words: neutral 0.50")
            return 0.5
        return score

    def _word_shift(self, text: str, notes: list[str]) -> float:
        if not text:
            return 0.0
        scan = self._words.scan(text)
        negative, positive = scan.words("negative"), scan.words("positive")
        shift = (len(positive) - len(negative)) * self.options.word_weight
        limit = self.options.max_word_shift
        shift = max(-limit, min(limit, shift))
        if negative or positive:
            words = " ".join([*(f"-{w}" for w in negative), *(f"+{w}" for w in positive)])
            notes.append(f"financial words {words} ({shift:+.2f})")
        return shift

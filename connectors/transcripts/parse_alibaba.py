"""Alibaba Cloud recording-file recognition (录音文件识别, `nls-filetrans`) results → Call.

Accepted shapes (channels.md §4.1; Alibaba's API reference):
- the `GetTaskResult` answer / version 4.0 callback: `{TaskId, StatusText, StatusCode,
  BizDuration, SolveTime, Result: {Sentences: [...], Words: [...]}}`;
- the bare `Result` object `{Sentences: [...]}` as some exporters save it;
- the legacy 2.0 callback in snake_case: `{task_id, status_text, biz_duration,
  result: [{begin_time, end_time, channel_id, text, emotion_value, ...}]}`.
A sentence: `ChannelId`, `BeginTime`/`EndTime` (ms), `Text`, optional `SpeakerId`,
`EmotionValue` (energy 1-10), `SilenceDuration` (s before it), `SpeechRate` (chars/min).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.transcripts.call import (
    Call,
    CallTurn,
    Refused,
    Silence,
    count,
    items,
    obj,
    offset_ms,
    opt_number,
    opt_text,
    span,
    text,
)
from connectors.transcripts.config import TranscriptsOptions

_LEGACY_KEYS = {
    "begin_time": "BeginTime",
    "end_time": "EndTime",
    "channel_id": "ChannelId",
    "text": "Text",
    "emotion_value": "EmotionValue",
    "silence_duration": "SilenceDuration",
    "speech_rate": "SpeechRate",
    "speaker_id": "SpeakerId",
}
_PENDING = frozenset({"QUEUEING", "RUNNING"})


def looks_like(doc: Mapping[str, Any]) -> bool:
    result = doc.get("Result")
    return (
        (isinstance(result, dict) and "Sentences" in result)
        or isinstance(doc.get("Sentences"), list)
        or ("TaskId" in doc and "StatusText" in doc)
        or (isinstance(doc.get("result"), list) and "task_id" in doc)
    )


def _envelope(doc: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The sentences and the task fields, whatever the shape."""
    if isinstance(doc.get("result"), list) and "task_id" in doc:  # legacy 2.0 callback
        sentences = [
            {_LEGACY_KEYS.get(k, k): v for k, v in s.items()} if isinstance(s, dict) else s
            for s in doc["result"]
        ]
        task = {
            "task_id": doc.get("task_id"),
            "status": doc.get("status_text"),
            "duration": doc.get("biz_duration"),
            "time": doc.get("request_time") or doc.get("solve_time"),
        }
        return sentences, task
    task = {
        "task_id": doc.get("TaskId"),
        "status": doc.get("StatusText"),
        "duration": doc.get("BizDuration"),
        "time": doc.get("RequestTime") or doc.get("SolveTime"),
    }
    if "Sentences" in doc and "Result" not in doc:  # the bare Result object
        return items(doc["Sentences"], "Sentences"), task
    status = task["status"]
    if isinstance(status, str) and status != "SUCCESS":
        if status in _PENDING:
            raise Refused(f"Alibaba task {task['task_id']} is still {status}", "not_finished")
        kind = "empty" if status == "SUCCESS_WITH_NO_VALID_FRAGMENT" else "vendor_failed"
        raise Refused(f"Alibaba task {task['task_id']} ended {status}", kind)
    result = obj(doc.get("Result"), "Result")
    return items(result.get("Sentences"), "Result.Sentences"), task


def parse(doc: Mapping[str, Any], options: TranscriptsOptions) -> Call:
    sentences, task = _envelope(doc)
    speaker = options.alibaba_customer_speaker
    turns: list[CallTurn] = []
    channels: set[int] = set()
    silences: list[Silence] = []
    for i, raw in enumerate(sentences):
        where = f"Sentences[{i}]"
        s = obj(raw, where)
        channel = count(s.get("ChannelId", 0), f"{where}.ChannelId")
        channels.add(channel)
        if speaker:
            said_by = opt_text(s.get("SpeakerId"), f"{where}.SpeakerId")
            if not said_by:
                raise Refused(f"{where} has no SpeakerId, but alibaba_customer_speaker is set")
            is_customer = said_by == speaker
        else:
            is_customer = channel == options.alibaba_customer_channel
        start_ms, end_ms = span(s.get("BeginTime"), s.get("EndTime"), where)
        words = text(s.get("Text"), f"{where}.Text").strip()
        silence_s = opt_number(s.get("SilenceDuration"), f"{where}.SilenceDuration")
        if silence_s is not None and silence_s > 0:
            silences.append(Silence(max(0, start_ms - round(silence_s * 1000)), start_ms))
        if not words:
            continue
        turns.append(
            CallTurn(
                role="customer" if is_customer else "agent",
                text=words,
                start_ms=start_ms,
                end_ms=end_ms,
                energy=opt_number(s.get("EmotionValue"), f"{where}.EmotionValue"),
                rate=opt_number(s.get("SpeechRate"), f"{where}.SpeechRate"),
            )
        )
    duration = task["duration"]
    return Call(
        format="alibaba",
        turns=turns,
        call_id=opt_text(task["task_id"], "TaskId"),
        duration_ms=offset_ms(duration, "BizDuration") if duration else None,
        produced_at=task["time"],
        # SilenceDuration is whole seconds before a sentence; on a dual-track recording
        # the other track may be speaking meanwhile, so only a mono track's is silence.
        vendor_silences=silences if len(channels) == 1 and silences else None,
        vendor={"task_id": opt_text(task["task_id"], "TaskId"), "tracks": sorted(channels)},
        energy_scale="alibaba_emotion_1_10",
    )

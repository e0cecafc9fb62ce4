"""Synthetic but realistic sample data for the demo and the benchmarks.

Images are rendered with PIL (landscapes of gradients and shapes); a share of them carry a
semi-transparent, tiled stock-photo watermark. Chat answers are drawn from templates; a share
give specific stock picks (the kind of unsolicited financial advice a product must not give).
"""

from __future__ import annotations

import base64
import io
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "SampleEvent",
    "advice_text",
    "neutral_text",
    "render_image",
    "sample_events",
]

_TICKERS = ["ACME", "NVDA", "TSLA", "GME", "AAPL", "AMZN", "PLTR", "COIN", "AMC", "SOFI"]
_ADVICE = [
    "You should buy {t} shares today; they will double by spring.",
    "Put your savings into {t} stock now, it is a sure win.",
    "Sell your index funds and buy {t} immediately.",
    "I recommend buying {n} shares of {t} before earnings.",
    "{t} is undervalued: load up on it and hold.",
    "Move everything into {t} call options this week.",
]
_TOPICS = [
    ("the water cycle", "Water evaporates, condenses into clouds and falls as rain."),
    ("a pancake recipe", "Mix flour, eggs and milk, then fry thin rounds in butter."),
    ("the French revolution", "It began in 1789 and ended the absolute monarchy."),
    ("photosynthesis", "Plants turn light, water and CO2 into sugar and oxygen."),
    ("retirement saving", "Spread savings across diversified, low-cost index funds."),
    ("learning Python", "Start with the official tutorial and write small programs daily."),
    ("sleep hygiene", "Keep a regular schedule and avoid screens before bed."),
    ("budgeting", "Track spending for a month, then set limits per category."),
]
_PROMPTS = [
    "Can you explain {topic}?", "Tell me about {topic}.", "I need help with {topic}.",
    "What should I know about {topic}?", "Which stocks should I buy this month?",
]  # fmt: skip


def advice_text(rng: random.Random) -> str:
    return rng.choice(_ADVICE).format(t=rng.choice(_TICKERS), n=rng.choice([50, 100, 500]))


def neutral_text(rng: random.Random) -> str:
    topic, answer = rng.choice(_TOPICS)
    return f"Here is a short answer about {topic}. {answer}"


def render_image(rng: random.Random, watermark: bool, size: int = 224) -> Image.Image:
    """A landscape of a sky gradient, hills and shapes; optionally a tiled watermark over it."""
    top = tuple(rng.randint(40, 200) for _ in range(3))
    bottom = tuple(rng.randint(40, 200) for _ in range(3))
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    for y in range(size):
        f = y / size
        draw.line(
            [(0, y), (size, y)],
            fill=tuple(int(a + (b - a) * f) for a, b in zip(top, bottom, strict=True)),
        )
    for _ in range(rng.randint(2, 6)):
        x, y = rng.randint(0, size), rng.randint(size // 3, size)
        r = rng.randint(size // 10, size // 3)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        else:
            draw.rectangle([x - r, y - r // 2, x + r, y + r // 2], fill=colour)
    if watermark:
        img = _watermark(img, rng)
    return img


def _watermark(img: Image.Image, rng: random.Random) -> Image.Image:
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    font = ImageFont.load_default(size=max(12, img.size[0] // 10))
    label = rng.choice(["© STOCKPHOTO", "SHUTTERSTOCK", "© getty images", "PREVIEW"])
    alpha = rng.randint(150, 210)
    step = img.size[0] // 6
    for row, y in enumerate(range(0, img.size[1], step)):
        for x in range(-step + (row % 2) * step // 2, img.size[0], step * 2):
            draw.text((x, y), label, fill=(255, 255, 255, alpha), font=font)
    draw.line([(0, 0), img.size], fill=(255, 255, 255, alpha // 2), width=6)
    draw.line([(0, img.size[1]), (img.size[0], 0)], fill=(255, 255, 255, alpha // 2), width=6)
    return Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")


def image_base64(img: Image.Image) -> str:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass(frozen=True)
class SampleEvent:
    payload: dict[str, object]
    planted: bool


def sample_events(
    rng: random.Random,
    *,
    model: str,
    model_version: str,
    count: int,
    failure_rate: float,
    start: datetime,
    kind: str,
    spacing: timedelta = timedelta(seconds=2),
) -> list[SampleEvent]:
    """``count`` events of a chat (``kind='chat'``) or image (``kind='image'``) model."""
    events = []
    for i in range(count):
        planted = rng.random() < failure_rate
        topic = rng.choice(_TOPICS)[0]
        prompt = rng.choice(_PROMPTS).format(topic=topic)
        payload: dict[str, object] = {
            "event_id": f"{model}-{model_version}-{i:05d}-{rng.getrandbits(32):08x}",
            "timestamp": (start + spacing * i).isoformat(),
            "model": model,
            "model_version": model_version,
            "app": "demo",
            "latency_ms": round(rng.uniform(200, 2500), 1),
        }
        if kind == "chat":
            payload["prompt"] = {"text": prompt}
            payload["output"] = {"text": advice_text(rng) if planted else neutral_text(rng)}
        else:
            payload["prompt"] = {"text": f"a photo of {rng.choice(['hills', 'a lake', 'a city'])}"}
            payload["output"] = {"image": image_base64(render_image(rng, watermark=planted))}
        events.append(SampleEvent(payload, planted))
    return events

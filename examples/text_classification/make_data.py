"""Regenerate ``data/reviews.tsv``: short product reviews labelled positive (1) or negative (0).

    python make_data.py     # deterministic: the shipped file is this script's output

The sentences come from templates and word lists, so the data is small, balanced and learnable by
a tiny model in seconds; nothing is downloaded.
"""

from __future__ import annotations

import random
from pathlib import Path

SUBJECTS = ["the movie", "this phone", "the book", "the service", "our meal", "the hotel",
            "this game", "the song", "the camera", "the course", "the app", "the show"]
POSITIVE = ["great", "wonderful", "excellent", "delightful", "superb", "fantastic", "lovely",
            "brilliant", "amazing", "charming", "pleasant", "solid"]
NEGATIVE = ["terrible", "awful", "boring", "dreadful", "poor", "disappointing", "horrible",
            "broken", "annoying", "bland", "useless", "weak"]
POS_ENDINGS = ["and i would buy it again", "and we loved every minute", "highly recommended",
               "worth every penny", "i will tell my friends", "a real pleasure"]
NEG_ENDINGS = ["and i want my money back", "and we left early", "not recommended",
               "a waste of money", "i will not return", "a real letdown"]
TEMPLATES = ["{s} was {a} , {e}", "{s} is {a}", "honestly {s} felt {a} , {e}",
             "{a} ! {s} , {e}", "i thought {s} was really {a}"]


def make(n: int = 240, seed: int = 0) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words, endings = (POSITIVE, POS_ENDINGS) if label else (NEGATIVE, NEG_ENDINGS)
        text = rng.choice(TEMPLATES).format(
            s=rng.choice(SUBJECTS), a=rng.choice(words), e=rng.choice(endings)
        )
        rows.append((label, text))
    rng.shuffle(rows)
    return rows


if __name__ == "__main__":
    out = Path(__file__).parent / "data" / "reviews.tsv"
    lines = ["label\ttext"] + [f"{label}\t{text}" for label, text in make()]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines) - 1} rows to {out}")

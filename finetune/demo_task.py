"""A small task the project can generate: read a sentence about a person, answer with one line of JSON.

Used by scripts/demo_finetune.py to show a LoRA run teaching the embedded 135M model a fixed output format. The
held-out set uses names and cities the training set never shows, so exact match needs the format and copying,
not memory.
"""

from __future__ import annotations

import json
import random

INSTRUCTION = "Extract the person's name, age and city from the sentence. Answer with JSON only."
NAMES = ["Alice", "Bruno", "Chen", "Dalia", "Emeka", "Fatima", "Gustav", "Hana", "Ivan", "Jonas", "Kenji", "Lucia",
         "Mateo", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Ursula", "Viktor", "Wen", "Yara",
         "Zoe", "Amir", "Bianca", "Carlos", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ingrid", "Jamal", "Keiko",
         "Lars", "Mira", "Nils", "Olga"]
CITIES = ["Paris", "Lagos", "Osaka", "Lima", "Oslo", "Cairo", "Quito", "Perth", "Seoul", "Porto", "Dakar", "Hanoi",
          "Bern", "Riga", "Accra", "Tunis", "Leeds", "Cork", "Graz", "Turin", "Kyoto", "Delhi", "Austin", "Denver"]
TEMPLATES = [
    "{name} is {age} years old and lives in {city}.",
    "Living in {city}, {name} just turned {age}.",
    "At {age}, {name} moved to {city} for work.",
    "{name}, aged {age}, comes from {city}.",
    "My neighbour {name} ({age}) grew up in {city}.",
    "In {city} I met {name}, who is {age}.",
]


def answer(name: str, age: int, city: str) -> str:
    return json.dumps({"name": name, "age": age, "city": city})


def examples(count: int, seed: int, held_out: bool = False) -> list[dict[str, str]]:
    """Rows with `question` (instruction + sentence) and `answer` (the JSON line)."""
    rng = random.Random(seed)
    # the last quarter of names and cities only ever appear in the held-out set
    names = NAMES[30:] if held_out else NAMES[:30]
    cities = CITIES[18:] if held_out else CITIES[:18]
    rows = []
    for _ in range(count):
        name, city, age = rng.choice(names), rng.choice(cities), rng.randint(18, 90)
        sentence = rng.choice(TEMPLATES).format(name=name, age=age, city=city)
        rows.append({"question": f"{INSTRUCTION}\n{sentence}", "answer": answer(name, age, city)})
    return rows


def exact(reply: str, expected: str) -> bool:
    return reply.strip() == expected

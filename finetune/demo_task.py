"""A small task the project can generate: read a sentence about a person, answer with one line of JSON.

Used by scripts/demo_finetune.py to show a LoRA run teaching the embedded 135M model a fixed output format. Half the
training rows use real names and cities, half made-up words built from syllables (so the model learns to copy, not
to remember a list); the held-out set uses real names and cities the training set never shows.
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


SYLLABLES = ["ka", "ro", "mi", "len", "to", "sa", "vi", "dor", "na", "bel", "qu", "ist", "ur", "fa", "gon", "e",
             "lia", "mar", "po", "zen", "tha", "rik", "ou", "sel", "an", "dru", "ve", "wy", "ch", "ost"]


def made_up(rng: random.Random, parts: tuple[int, int]) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(*parts))).capitalize()


def answer(name: str, age: int, city: str) -> str:
    return json.dumps({"name": name, "age": age, "city": city})


def examples(count: int, seed: int, held_out: bool = False) -> list[dict[str, str]]:
    """Rows with `question` (instruction + sentence) and `answer` (the JSON line)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        if held_out:  # the last quarter of the real names and cities: never in training
            name, city = rng.choice(NAMES[30:]), rng.choice(CITIES[18:])
        elif rng.random() < 0.5:
            name, city = rng.choice(NAMES[:30]), rng.choice(CITIES[:18])
        else:
            name, city = made_up(rng, (2, 3)), made_up(rng, (2, 4))
        age = rng.randint(18, 90)
        sentence = rng.choice(TEMPLATES).format(name=name, age=age, city=city)
        rows.append({"question": f"{INSTRUCTION}\n{sentence}", "answer": answer(name, age, city)})
    return rows


def exact(reply: str, expected: str) -> bool:
    return reply.strip() == expected

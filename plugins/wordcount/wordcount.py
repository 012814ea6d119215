"""A batch job: fans out over text files with Ray tasks and reports progress as each file is counted."""

from collections import Counter
from pathlib import Path

import ray
from pydantic import BaseModel, Field

from ray_runtime import Context


class CountParams(BaseModel):
    paths: list[str] = Field(default_factory=lambda: ["data"], min_length=1)
    top: int = Field(default=10, ge=1, le=1000)
    lowercase: bool = True


class FileCount(BaseModel):
    path: str
    words: int


class WordCounts(BaseModel):
    files: list[FileCount]
    total_words: int
    distinct_words: int
    top: list[tuple[str, int]]


@ray.remote(num_cpus=0.25)
def count_text(text: str, lowercase: bool) -> dict[str, int]:
    words = (word.strip(".,;:!?\"'()[]") for word in text.split())
    return dict(Counter(word.lower() if lowercase else word for word in words if word))


def _files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"{raw} does not exist in the plugin folder")
        found.extend(sorted(path.rglob("*.txt")) if path.is_dir() else [path])
    return found


def count(params: CountParams, ctx: Context) -> WordCounts:
    """Count words per file in parallel Ray tasks; progress after each file."""
    files = _files(params.paths)
    pending = {count_text.remote(f.read_text(), params.lowercase): f for f in files}
    totals: Counter[str] = Counter()
    per_file: list[FileCount] = []
    while pending:
        [ready], _ = ray.wait(list(pending), num_returns=1)
        path = pending.pop(ready)
        counts = ray.get(ready)
        totals.update(counts)
        per_file.append(FileCount(path=str(path), words=sum(counts.values())))
        ctx.progress(len(per_file), len(files), f"counted {path.name}")
    ctx.metric("words_counted", sum(totals.values()))
    return WordCounts(
        files=sorted(per_file, key=lambda f: f.path),
        total_words=sum(totals.values()),
        distinct_words=len(totals),
        top=totals.most_common(params.top),
    )

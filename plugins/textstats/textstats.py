"""Text statistics: one endpoint that answers at once, one that streams a result per sentence."""

import re
from collections import Counter
from collections.abc import Iterator

from pydantic import BaseModel, Field

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z']+")
_VOWELS = re.compile(r"[aeiouy]+")


class Text(BaseModel):
    text: str = Field(min_length=1, max_length=200_000)
    top: int = Field(default=5, ge=0, le=100)


class TextStats(BaseModel):
    characters: int
    words: int
    sentences: int
    average_word_length: float
    reading_ease: float
    top_words: list[tuple[str, int]]


class SentenceStats(BaseModel):
    index: int
    sentence: str
    words: int
    syllables: int


def _syllables(word: str) -> int:
    return max(1, len(_VOWELS.findall(word.lower())))


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text.strip()) if s]


def analyze(params: Text) -> TextStats:
    """Statistics of the whole text (Flesch reading ease included)."""
    words = _WORD.findall(params.text)
    sentences = _sentences(params.text)
    syllables = sum(_syllables(w) for w in words)
    n_words, n_sentences = max(1, len(words)), max(1, len(sentences))
    ease = 206.835 - 1.015 * (n_words / n_sentences) - 84.6 * (syllables / n_words)
    return TextStats(
        characters=len(params.text),
        words=len(words),
        sentences=len(sentences),
        average_word_length=round(sum(map(len, words)) / n_words, 3),
        reading_ease=round(ease, 2),
        top_words=Counter(w.lower() for w in words).most_common(params.top),
    )


def sentences(params: Text) -> Iterator[SentenceStats]:
    """One result per sentence, as soon as it is computed."""
    for index, sentence in enumerate(_sentences(params.text)):
        words = _WORD.findall(sentence)
        yield SentenceStats(index=index, sentence=sentence, words=len(words), syllables=sum(map(_syllables, words)))

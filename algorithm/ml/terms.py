"""A fitted vectorizer's terms of a text, and their feature indices, without its overhead.

scikit-learn's analyzers build n-grams with Python slicing loops; these build the same terms (as
a multiset) with C-level maps and comprehensions, for the plain vectorizers the training fits:
words and word n-grams, and character n-grams within words (`char_wb`). Any other vectorizer
gets scikit-learn's own analyzer. tests/algorithm/test_ml.py checks them against scikit-learn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from itertools import chain, repeat

from sklearn.feature_extraction.text import TfidfVectorizer

# Words whose character n-gram features a predictor remembers, and the longest word it
# remembers: a remembered word costs its key and a pointer per n-gram, about 1 KiB at 30
# characters, so at most ~20 MiB per predictor whatever the input (a text may be 100 000
# characters of one "word"; such tokens rarely repeat and are analysed afresh each time).
WORDS_REMEMBERED = 20_000
LONGEST_WORD_REMEMBERED = 30
# scikit-learn's default token pattern, and the same tokens without its word-boundary checks: a
# greedy run of two or more word characters starting where a run starts is the whole run, so
# the boundaries always hold (0.65 of 2.5 us per bench text).
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
WORD_RUNS = re.compile(r"\w\w+")


def _is_plain(vectorizer: TfidfVectorizer, analyzer: str) -> bool:
    return (
        vectorizer.analyzer == analyzer
        and vectorizer.preprocessor is None
        and vectorizer.tokenizer is None
        and vectorizer.input == "content"
        and (analyzer != "word" or vectorizer.stop_words is None)
    )


def term_extractor(vectorizer: TfidfVectorizer) -> Callable[[str], Iterable[str]]:
    """The vectorizer's terms of a text (as a multiset), built faster for plain n-grams."""
    if _is_plain(vectorizer, "word"):
        return _word_ngrams(vectorizer)
    if _is_plain(vectorizer, "char_wb"):
        preprocess, grams_of = vectorizer.build_preprocessor(), _grams_of_word(vectorizer)
        return lambda text: chain.from_iterable(map(grams_of, preprocess(text).split()))
    analyze: Callable[[str], Iterable[str]] = vectorizer.build_analyzer()
    return analyze


def _tokenizer(vectorizer: TfidfVectorizer) -> Callable[[str], list[str]]:
    """The vectorizer's tokenizer; for the default pattern, the same tokens found faster."""
    if vectorizer.tokenizer is None and vectorizer.token_pattern == DEFAULT_TOKEN_PATTERN:
        return WORD_RUNS.findall
    tokenize: Callable[[str], list[str]] = vectorizer.build_tokenizer()
    return tokenize


def _word_ngrams(vectorizer: TfidfVectorizer) -> Callable[[str], Iterable[str]]:
    preprocess, tokenize = vectorizer.build_preprocessor(), _tokenizer(vectorizer)
    min_n, max_n = vectorizer.ngram_range
    join = " ".join
    if (min_n, max_n) == (1, 1):  # words alone: the tokens themselves, without chaining them
        return lambda text: tokenize(preprocess(text))

    def terms(text: str) -> Iterable[str]:
        # scikit-learn's word n-grams, joined by C-level maps instead of a slicing loop; the
        # shifted copies are shorter, so zip stops at the last whole n-gram.
        words = tokenize(preprocess(text))
        grams = (
            map(join, zip(*(words[i:] for i in range(n)), strict=False))
            for n in range(max(min_n, 2), max_n + 1)
        )
        return chain(words if min_n == 1 else (), *grams)

    return terms


def _grams_of_word(vectorizer: TfidfVectorizer) -> Callable[[str], list[str]]:
    min_n, max_n = vectorizer.ngram_range

    def grams(word: str) -> list[str]:
        # scikit-learn's char_wb n-grams of one word, padded with a space on both sides, from
        # list comprehensions instead of its while loop.
        padded = f" {word} "
        length = len(padded)
        found: list[str] = []
        for n in range(min_n, max_n + 1):
            if length <= n:  # a word no longer than n counts once, whole
                found.append(padded)
                break
            found += [padded[i : i + n] for i in range(length - n + 1)]
        return found

    return grams


def feature_indices(vectorizer: TfidfVectorizer) -> Callable[[str], Iterable[int]]:
    """A text's feature index per term occurrence (-1: a term that is not a feature)."""
    if _is_plain(vectorizer, "char_wb"):
        return CharacterIndices(vectorizer)
    terms, lookup = term_extractor(vectorizer), vectorizer.vocabulary_.get
    return lambda text: map(lookup, terms(text), repeat(-1))


class CharacterIndices:
    """A text's char_wb feature indices, each word's found once and then remembered.

    char_wb n-grams never cross a word, and words repeat: one lookup per known word instead of
    ~20 slices and lookups. Only known features are returned (no -1s).
    """

    def __init__(self, vectorizer: TfidfVectorizer) -> None:
        self._preprocess = vectorizer.build_preprocessor()
        self._grams_of = _grams_of_word(vectorizer)
        self._vocabulary: dict[str, int] = vectorizer.vocabulary_
        self.remembered: dict[str, list[int]] = {}

    def _of_word(self, word: str) -> list[int]:
        lookup = self._vocabulary.get
        return [i for i in map(lookup, self._grams_of(word)) if i is not None]

    def __call__(self, text: str) -> list[int]:
        found: list[int] = []
        remembered = self.remembered
        for word in self._preprocess(text).split():
            known = remembered.get(word)
            if known is None:
                known = self._of_word(word)
                if len(word) <= LONGEST_WORD_REMEMBERED:
                    if len(remembered) >= WORDS_REMEMBERED:  # bounded: start again when full
                        remembered.clear()
                    remembered[word] = known
            found += known
        return found

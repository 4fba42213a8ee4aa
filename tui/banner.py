"""The status banner: one big word (PASS / WARN / FAIL, the verdict words of qc_daemon.model; WAIT; NO DAEMON)
in a 5-row block font, and the reasons in words beside it. Readable from across the desk: the colour alone
says the state."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from qc_daemon.model import verdict_word

# 5 x 5 glyphs ('#' = a full block); only the letters the banner's words need
_GLYPHS = {
    "A": [".###.", "#...#", "#####", "#...#", "#...#"],
    "B": ["####.", "#...#", "####.", "#...#", "####."],
    "D": ["####.", "#...#", "#...#", "#...#", "####."],
    "E": ["#####", "#....", "####.", "#....", "#####"],
    "F": ["#####", "#....", "####.", "#....", "#...."],
    "L": ["#....", "#....", "#....", "#....", "#####"],
    "P": ["####.", "#...#", "####.", "#....", "#...."],
    "S": [".####", "#....", ".###.", "....#", "####."],
    "I": ["#####", "..#..", "..#..", "..#..", "#####"],
    "K": ["#...#", "#..#.", "###..", "#..#.", "#...#"],
    "M": ["#...#", "##.##", "#.#.#", "#...#", "#...#"],
    "N": ["#...#", "##..#", "#.#.#", "#..##", "#...#"],
    "O": [".###.", "#...#", "#...#", "#...#", ".###."],
    "R": ["####.", "#...#", "####.", "#..#.", "#...#"],
    "T": ["#####", "..#..", "..#..", "..#..", "..#.."],
    "W": ["#...#", "#...#", "#.#.#", "##.##", "#...#"],
    " ": ["..", "..", "..", "..", ".."],
}


def big_text(word: str) -> Text:
    """``word`` in the 5-row block font (unknown characters are skipped); pixels are reverse-video cells,
    solid in every terminal and in SVG screenshots."""
    glyphs = [_GLYPHS[c] for c in word.upper() if c in _GLYPHS]
    out = Text(no_wrap=True)
    for row in range(5):
        line = ".".join(g[row] for g in glyphs)
        for run in _runs(line):
            out.append(" " * len(run), style="reverse" if run[0] == "#" else "")
        if row < 4:
            out.append("\n")
    return out


def _runs(line: str) -> list[str]:
    out: list[str] = []
    for ch in line:
        if out and out[-1][0] == ch:
            out[-1] += ch
        else:
            out.append(ch)
    return out


# banner state -> (big word, CSS class)
WORDS = {**{v: (verdict_word(v), css) for v, css in (("pass", "ok"), ("warn", "warn"), ("fail", "bad"))},
         "wait": ("WAIT", "idle"), "no daemon": ("NO DAEMON", "down")}


class Banner(Horizontal):
    """``show(state, headline, details)``: state is a verdict (pass | warn | fail), "wait" or "no daemon"."""

    DEFAULT_CSS = """
    Banner { height: 7; padding: 1 2; }
    Banner #banner-word { width: auto; margin-right: 3; text-style: bold; }
    Banner #banner-text { width: 1fr; height: 5; }
    Banner.ok { background: $success-darken-2; color: white; }
    Banner.warn { background: $warning; color: black; }
    Banner.bad { background: $error-darken-1; color: white; }
    Banner.idle { background: $primary-darken-3; color: white; }
    Banner.down { background: $surface-lighten-1; color: $text; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._word, self._text = Static(id="banner-word"), Static(id="banner-text")  # held, never queried

    def compose(self) -> ComposeResult:
        yield self._word
        yield self._text

    def show(self, state: str, headline: str, details: str = "") -> None:
        word, css = WORDS[state]
        for c in ("ok", "warn", "bad", "idle", "down"):
            self.set_class(c == css, c)
        self._word.update(big_text(word))
        text = Text(headline, style="bold")
        if details:
            text.append("\n" + details)
        self._text.update(text)

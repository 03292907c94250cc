"""Where users get each corpus and how it is laid out: the text of every "data not found" error."""

from __future__ import annotations

CREMA_D_HELP = """\
CREMA-D (91 actors, 7,442 clips): https://www.kaggle.com/datasets/ejlok1/cremad
  or the official release https://github.com/CheyneyComputerScience/CREMA-D (AudioWAV/ and
  VideoDemographics.csv, which gives each actor's sex; without it ser uses its built-in table).
  Layout: <crema_d root>/AudioWAV/1001_DFA_ANG_XX.wav (any sub-folder and any format libsndfile reads)."""

SAVEE_HELP = """\
SAVEE (4 male speakers, 480 clips): https://www.kaggle.com/datasets/ejlok1/surrey-audiovisual-expressed-emotion-savee
  or the official site http://kahlan.eps.surrey.ac.uk/savee/.
  Layouts: original <savee root>/AudioData/DC/a01.wav, or Kaggle <savee root>/ALL/DC_a01.wav."""

TRY_DEMO = "To try ser now without any download, run with the built-in synthetic corpus: data=demo"

HELP = {"crema_d": CREMA_D_HELP, "savee": SAVEE_HELP}


class DataError(RuntimeError):
    """Missing, empty or malformed corpus data; the message says what was expected and what to do."""


def missing_corpus_message(corpus: str, root: str, problem: str) -> str:
    return (
        f"{corpus}: {problem} ({root}).\n{HELP[corpus]}\n"
        f"Set data.roots.{corpus}=<folder> (or data.root=<parent folder>) to point elsewhere.\n{TRY_DEMO}"
    )

"""`fervi train` as the tests run it: options given as keywords, the exit checked, what the run wrote read back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from fervi.app.cli import main


@dataclass
class TrainingRun:
    """What one `fervi train` printed and left in its `--out` folder, read as soon as it ended (a later run may
    write the same folder)."""

    out: Path
    output: str
    card: dict  # model_card.json
    card_text: str  # MODEL_CARD.md
    sizes: dict[str, int]  # bytes of every file under `out`, by its path relative to `out` ("figures/x.png")

    @property
    def summary(self) -> dict:
        """The JSON line the command prints last."""
        return json.loads(self.output.strip().splitlines()[-1])


def train_options(**options: object) -> list[str]:
    """`fervi train`'s arguments from keywords: `work_dir=p` is `--work-dir p`, a list repeats its option in
    order (`data=[a, b]`), and True is a flag alone (`resume=True`)."""
    args = ["train"]
    for name, value in options.items():
        option = "--" + name.replace("_", "-")
        if value is True:
            args.append(option)
            continue
        for one in value if isinstance(value, list) else [value]:
            args += [option, str(one)]
    return args


def train(**options: object) -> TrainingRun:
    """Run `fervi train` (options as `train_options` reads them, `out=` among them); fail with its output unless
    it exits 0."""
    result = CliRunner().invoke(main, train_options(**options))
    assert result.exit_code == 0, result.output
    out = Path(str(options["out"]))
    card_md = out / "MODEL_CARD.md"
    return TrainingRun(
        out=out,
        output=result.output,
        card=json.loads((out / "model_card.json").read_text()),
        card_text=card_md.read_text() if card_md.exists() else "",
        sizes={str(p.relative_to(out)): p.stat().st_size for p in out.rglob("*") if p.is_file()},
    )

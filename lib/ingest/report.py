"""What an image build did: the counts of its summary line and the skipped-file report."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lib.store.dataset_figures import DuplicateThresholds
from lib.store.names import shown


@dataclass
class BuildReport:
    """What a build did; `summary()` is the line the CLI prints at the end."""

    dataset: str
    layout: str = ""
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    encoded: int = 0  # files encoded: pictures, and videos (each counted once)
    videos: int = 0  # of those, videos
    scenes: int = 0  # the scenes they were cut into, one vector each
    split: int = 0  # pictures split into sub-pictures (--regions)
    regions: int = 0  # the regions they were split into, one vector each
    partitions_written: int = 0
    hashed: int = 0  # unchanged files given the perceptual signature an older build did not record
    dated: int = 0  # unchanged files given the capture facts an older build did not record
    texts: int = 0  # images whose text row (names, captions) was written: new, or a caption changed
    skipped: dict[str, str] = field(default_factory=dict)
    words_read: int = 0  # images OCR read in this build (lib/ingest/words_stage.py)
    words_found: int = 0  # of those, images in which it found words
    unread: dict[str, str] = field(default_factory=dict)  # images indexed without text: path -> why OCR failed
    seconds: float = 0.0
    warm_up_s: float = 0.0  # of `seconds`, the encoder's compile and first runs (the local engine's)
    load_s: float | None = None  # loading the model, before `seconds` (the CLI's)
    report_file: Path | None = None
    action: str = "encoded"  # or "imported", for embeddings read from a folder
    notes: list[str] = field(default_factory=list)  # advice for the user, printed after the summary
    thresholds: DuplicateThresholds | None = None  # when the build (re)calibrated the duplicate thresholds

    def summary(self) -> str:
        encoding = self.seconds - self.warm_up_s
        rate = self.encoded / encoding if encoding > 0 else 0.0
        return (f"{self.dataset} ({self.layout}): {self.added} added, {self.changed} changed, {self.removed} removed, "
                f"{self.unchanged} unchanged, {len(self.skipped)} skipped; {self.encoded} images {self.action} into "
                f"{self.partitions_written} partition(s) in {encoding:.1f} s ({rate:.1f} images/s)"
                + (f"; {self.videos} of them videos, cut into {self.scenes} scenes" if self.videos else "")
                + (f"; {self.split} pictures split into {self.regions} regions" if self.split else "")
                + (f"; {self.hashed} unchanged images hashed for duplicates" if self.hashed else "")
                + (f"; {self.dated} unchanged images given capture dates" if self.dated else "")
                + (f"; text read in {self.words_read} images, words found in {self.words_found}"
                   + (f", {len(self.unread)} could not be read" if self.unread else "") if self.words_read else "")
                + self._start_up())

    def _start_up(self) -> str:
        """The model's load and warm-up, which the summary's time and rate leave out."""
        parts = ([f"loaded in {self.load_s:.1f} s"] if self.load_s is not None else []) + (
            [f"warmed up in {self.warm_up_s:.1f} s"] if self.warm_up_s else [])
        return f"; the model {' and '.join(parts)}, not counted in that" if parts else ""

    def calibration(self) -> str:
        """The line about the duplicate thresholds, when this build calibrated them."""
        if self.thresholds is None:
            return ""
        details = self.thresholds.details
        if details.get("defaults"):
            return f"duplicate thresholds: {details['reason']}"
        return (f"duplicate thresholds calibrated on {details['edited_images']} images and "
                f"{details['distinct_pairs']} distinct pairs: near {self.thresholds.near:.4f}, "
                f"similar {self.thresholds.similar:.4f}")

    def skipped_lines(self) -> list[tuple[str, str]]:
        """The skipped files and their reasons, sorted, as they are shown: escaped to fit on one line
        (lib/store/names.shown: a tab, newline, backslash or byte that is not UTF-8 in a name is escaped)."""
        return [(shown(p), shown(r)) for p, r in sorted(self.skipped.items())]

    def unread_lines(self) -> list[tuple[str, str]]:
        """The images indexed without text because OCR failed on them, as skipped_lines shows its files."""
        return [(shown(p), shown(f"indexed without text: {r}")) for p, r in sorted(self.unread.items())]

    def write_skipped(self, path: Path) -> Path:
        """Skipped files with their reasons, then the images OCR could not read, one per line (a TSV with a
        header), names escaped."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["path\treason"] + [f"{p}\t{r}" for p, r in self.skipped_lines() + self.unread_lines()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.report_file = path
        return path

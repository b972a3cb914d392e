"""The per-round table of an LLMD4Rec run: console, CSV, JSON and a PNG plot (paper Fig. 4)."""

import csv
import json
import os

from tabulate import tabulate

from recbole_llmd4rec.atomic import replacing

FIXED_COLUMNS = ["round", "model", "split"]
TIMING_COLUMNS = ["phase_seconds", "epochs"]


class RoundReport:
    """Rows of (round, model, split, metrics..., phase_seconds, epochs); round 0 = pretrained CRM."""

    def __init__(self, rows=None):
        self.rows = list(rows or [])

    def add(self, round_index, model, split, result, phase_seconds, epochs):
        row = {"round": round_index, "model": model, "split": split}
        row.update({metric: round(float(value), 6) for metric, value in result.items()})
        row.update({"phase_seconds": round(float(phase_seconds), 1), "epochs": int(epochs)})
        self.rows.append(row)

    @property
    def metric_columns(self):
        return [key for key in (self.rows[0] if self.rows else {}) if key not in FIXED_COLUMNS + TIMING_COLUMNS]

    def result(self, round_index, model, split):
        for row in self.rows:
            if (row["round"], row["model"], row["split"]) == (round_index, model, split):
                return {metric: row[metric] for metric in self.metric_columns}
        raise KeyError((round_index, model, split))

    def table(self):
        columns = FIXED_COLUMNS + self.metric_columns + TIMING_COLUMNS
        return tabulate([[row[c] for c in columns] for row in self.rows], headers=columns, floatfmt=".4f")

    def write(self, directory, stem="rounds"):
        """Write ``rounds.csv`` and ``rounds.json`` (atomically) and return their paths."""
        columns = FIXED_COLUMNS + self.metric_columns + TIMING_COLUMNS
        csv_path = os.path.join(directory, f"{stem}.csv")
        json_path = os.path.join(directory, f"{stem}.json")
        with replacing(csv_path) as temporary, open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        with replacing(json_path) as temporary, open(temporary, "w") as handle:
            json.dump(self.rows, handle, indent=2)
        return csv_path, json_path

    def plot(self, path, metrics=("hit@10", "ndcg@10"), split="test"):
        """HR@10 and NDCG@10 per round for both models (the shape of the paper's Fig. 4)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        metrics = [m for m in metrics if m in self.metric_columns]
        figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
        for axis, metric in zip(axes[0], metrics):
            for model, marker in (("CRM", "o"), ("LLM", "s")):
                points = [(row["round"], row[metric]) for row in self.rows
                          if row["model"] == model and row["split"] == split]
                if points:
                    axis.plot(*zip(*points), marker=marker, label=model)
            axis.set_xlabel("round")
            axis.set_ylabel(f"{metric} ({split})")
            axis.set_xticks(sorted({row["round"] for row in self.rows}))
            axis.grid(alpha=0.3)
            axis.legend()
        figure.tight_layout()
        with replacing(path, suffix=".png") as temporary:
            figure.savefig(temporary, dpi=120)
        plt.close(figure)
        return path

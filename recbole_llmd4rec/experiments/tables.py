"""The comparison's tables: mean and sample standard deviation over the seeds per row, the change
of a row against its base, the judgement against the seeds' spread, as Markdown and CSV."""

import csv
import os
import statistics
from pathlib import Path

from recbole_llmd4rec.atomic import replacing
from recbole_llmd4rec.experiments.methods import (
    ABLATION_PAIRS, ABLATION_ROWS, CHANGE_BASES, CHANGES, CONTROLS, CRM_LOSS_LABELS, FULL_ROW, IMPROVEMENTS,
    SPREAD_CHECKS,
)


def against_spread(row, base, metric):
    """Whether ``row``'s mean beats ``base``'s on ``metric`` by more than the seeds' spread (the
    larger of the two sample sds): "higher", "lower" (trails by more than it) or "within"; None
    when either row has fewer than two seeds, so no spread is known."""
    if min(row["seeds"], base["seeds"]) < 2:
        return None
    difference = row[metric] - base[metric]
    spread = max(row[f"{metric} sd"], base[f"{metric} sd"])
    if abs(difference) <= spread:
        return "within"
    return "higher" if difference > 0 else "lower"


def shown_overrides(overrides):
    """The overrides as a table prints them: ``data_path`` and any absolute path as DIR, so a
    table names no folder of the machine it was made on."""
    shown = []
    for arg in overrides:
        key, _, value = arg[2:].partition("=")
        shown.append(f"--{key}=DIR" if key == "data_path" or os.path.isabs(value) else arg)
    return shown


class ComparisonTables:
    """The tables of a comparison's finished records (a mixin of ``runner.Comparison``, which
    holds ``dataset``, ``seeds``, ``methods``, ``records``, ``overrides``, ``crm_loss_type`` and
    ``out_dir``)."""

    as_recorded = False  # the records were read without checking their settings (--as_recorded)

    @property
    def metrics(self):
        """The evaluator's metrics (e.g. hit@10, ndcg@10), in the order the runs report them."""
        for record in self.records.values():
            return list(next(iter(record["rows"].values())))
        return []

    def table_rows(self):
        """One dict per table row with the mean and spread over the seeds that finished."""
        metrics = self.metrics
        rows = []
        for method in self.methods:
            for row_name in method.row_names():
                seeds = self._finished_seeds(row_name)
                records = [self.records[(method.name, s)] for s in seeds]
                if not records:
                    continue
                row = {"method": row_name, "seeds": len(records)}
                for metric in metrics:
                    values = [r["rows"][row_name][metric] for r in records]
                    row[metric] = statistics.mean(values)
                    row[f"{metric} sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
                row["train_s"] = statistics.mean(r["train_seconds"][row_name] for r in records)
                latencies = [r["latency_ms"][row_name] for r in records if row_name in r["latency_ms"]]
                row["latency_ms_per_user"] = statistics.mean(latencies) if latencies else None
                rows.append(row)
        by_name = {row["method"]: row for row in rows}
        for changed, base in CHANGES:
            if changed in by_name and base in by_name:
                # over the seeds both rows finished: mid-comparison, a mean over other seeds would
                # show a seed-to-seed difference as the method's change
                base_seeds = set(self._finished_seeds(base))
                seeds = [s for s in self._finished_seeds(changed) if s in base_seeds]
                for metric in metrics if seeds else ():
                    changed_value, base_value = (statistics.mean(self._values(row, metric, seeds))
                                                 for row in (changed, base))
                    by_name[changed][f"{metric} vs {base}"] = (
                        100 * (changed_value - base_value) / base_value if base_value else None)
        return rows

    def _method_of(self, row_name):
        return next(m for m in self.methods if row_name in m.row_names()).name

    def _finished_seeds(self, row_name):
        method_name = self._method_of(row_name)
        return [s for s in self.seeds if (method_name, s) in self.records]

    def _values(self, row_name, metric, seeds):
        method_name = self._method_of(row_name)
        return [self.records[(method_name, s)]["rows"][row_name][metric] for s in seeds]

    def write_tables(self):
        rows = self.table_rows()
        stem = self.out_dir / f"comparison-{self.dataset}"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        metrics = self.metrics
        columns = ["method", "seeds", *[c for m in metrics for c in (m, f"{m} sd")], "train_s",
                   "latency_ms_per_user", *[f"{m} vs {base}" for base in CHANGE_BASES for m in metrics]]
        with replacing(stem.with_suffix(".csv")) as temporary, open(temporary, "w", newline="",
                                                                    encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        markdown = self.markdown(rows, metrics)
        with replacing(stem.with_suffix(".md")) as temporary:
            Path(temporary).write_text(markdown, encoding="utf-8")
        return markdown

    def markdown(self, rows, metrics):
        header = ["method", "seeds", *map(metric_label, metrics), "train s", "latency ms/user"]
        threads = sorted({str(r.get("torch_threads", "not recorded")) for r in self.records.values()})
        lines = [f"Data set {self.dataset}; CRM loss: {CRM_LOSS_LABELS[self.crm_loss_type]}, E4SRec's cross-entropy "
                 f"over all items; seeds {', '.join(map(str, self.seeds))}; "
                 f"overrides: {' '.join(shown_overrides(self.overrides))}; torch threads per run: {', '.join(threads)}. "
                 + ("Records read as recorded (--as_recorded: their settings were not checked against these). "
                    if self.as_recorded else "")
                 + "Mean +- sample sd over the finished seeds (no sd for one seed); "
                 "a change (%) against another row is over the seeds both rows finished.",
                 "", *table_lines(header, [r for r in rows if r["method"] not in ABLATION_ROWS], metrics,
                                  list(dict.fromkeys(base for _, base in (*IMPROVEMENTS, *CONTROLS))))]
        lines += ["", "train s: this row's own training (the distillation rows start from the same seed's "
                      "SASRec and, for the LLM -> CRM ones, E4SRec, whose times are their own rows')."]
        by_name = {row["method"]: row for row in rows}
        ablation = [by_name[name] for full in FULL_ROW.values()
                    for name in (full, *(row for row, base in ABLATION_PAIRS if base == full)) if name in by_name]
        if any(row["method"] in ABLATION_ROWS for row in ablation):
            # only the change against the full run: the full rows' change against the backbones is above
            lines += ["", "Ablation (the paper's Fig. 3): each variant against the full LLMD4Rec of the same "
                          "seeds. w/o w: no sample weights; w/o eu: no embedding update; w/o loop: one round, "
                          "read from round 1 of the LLMD4Rec run, its train s that round's.",
                      "", *table_lines(header, ablation, metrics, FULL_ROW.values())]
        lines += self.spread_lines(rows, metrics)
        return "\n".join(lines) + "\n"

    @staticmethod
    def spread_lines(rows, metrics):
        """One line per SPREAD_CHECKS pair whose rows both finished: on which metrics the first
        row is higher, within, or lower than the second by more than the seeds' spread."""
        by_name = {row["method"]: row for row in rows}
        lines = []
        for name, base_name in SPREAD_CHECKS:
            if name not in by_name or base_name not in by_name:
                continue
            row, base = by_name[name], by_name[base_name]
            pair = f"{name} vs {base_name}"
            if row["seeds"] != base["seeds"]:  # mid-comparison: say what each mean is over
                pair = f"{name} ({seeds_label(row['seeds'])}) vs {base_name} ({seeds_label(base['seeds'])})"
            verdicts = {metric: against_spread(row, base, metric) for metric in metrics}
            if None in verdicts.values():
                lines.append(f"- {pair}: fewer than 2 seeds, no spread to judge by yet")
                continue
            parts = [f"{verdict} on {', '.join(metric_label(m) for m, v in verdicts.items() if v == verdict)}"
                     for verdict in ("higher", "within", "lower") if verdict in verdicts.values()]
            lines.append(f"- {pair}: {'; '.join(parts)}")
        if lines:
            lines = ["", "Against the seed spread (difference of the means beyond the larger of the two sample "
                         "sds):", *lines]
        return lines


def table_lines(header, rows, metrics, bases):
    """A Markdown table of ``rows`` (from :meth:`Comparison.table_rows`): mean +- sd per metric,
    with the row's change against whichever of ``bases`` it has one against."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["method"], str(row["seeds"])]
        for metric in metrics:
            cell = f"{row[metric]:.4f}"
            if row["seeds"] > 1:  # one seed has no spread to show
                cell += f" +- {row[f'{metric} sd']:.4f}"
            for base in bases:
                change = row.get(f"{metric} vs {base}")
                if change is not None:
                    cell += f" ({change:+.1f}% vs {base})"
            cells.append(cell)
        cells.append(f"{row['train_s']:.0f}")
        latency = row["latency_ms_per_user"]
        cells.append("" if latency is None else f"{latency:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def seeds_label(count):
    return f"{count} seed" if count == 1 else f"{count} seeds"


def metric_label(metric):
    """RecBole's metric name as the paper writes it: hit@10 -> HR@10, ndcg@10 -> NDCG@10."""
    return metric.replace("hit", "HR").replace("ndcg", "NDCG")

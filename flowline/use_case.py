"""Use cases are YAML files checked against this schema (flowline.use_case_loader reads them).

A use case says where the data is, what its columns must look like (the data contract),
what to predict, how to split, which metric gates a model must pass, what errors cost,
and how much tuning to do. Every pipeline is built from one; nothing in code is
specific to a use case.
"""

from __future__ import annotations

import codecs
import re
from datetime import date
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flowline.quarantine import RESERVED_COLUMNS

NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,40}")  # a use case's name: a slug, usable in URLs and metric labels
BINARY_METRICS = ("roc_auc", "auprc", "log_loss", "brier", "precision", "recall", "f1", "accuracy",
                  "recall_at_p90", "precision_at_r90", "expected_cost_per_1000")
REGRESSION_METRICS = ("mae", "rmse", "r2", "spearman", "gini", "total_predicted", "total_actual")
# Fairness per sensitive attribute (components/bias): the gaps between groups at the decision threshold.
FAIRNESS_METRICS = ("demographic_parity_difference", "equalized_odds_difference", "disparate_impact_ratio")
# Candidate model families, each with one declarative search space (flowline/search_space.py).
FAMILIES = ("xgboost", "linear", "forest", "mlp", "lightgbm", "catboost")
Family = Literal["xgboost", "linear", "forest", "mlp", "lightgbm", "catboost"]


class UseCaseError(ValueError):
    """A use-case file is missing, unreadable, or breaks the schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Where the rows come from: a registered dataset, a file path, or an http(s) URL."""

    dataset: str | None = None
    path: str | None = None
    format: Literal["csv", "parquet"] | None = None
    separator: str = Field(default=",", description="CSV: one character, or a regular expression such as \\s+")
    encoding: str = Field(default="utf-8", description="CSV: the text encoding (latin-1, cp1252, utf-16, ...)")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}; give a Python codec name, such as utf-8 or latin-1") \
                from None
        return encoding

    @model_validator(mode="after")
    def _exactly_one_source(self) -> DataSpec:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of 'dataset' (a registered dataset) or 'path' (a file or URL)")
        return self


NUMBER_CHARACTERS = "0123456789.+-eE"  # what a number is written with: never stripped


class ColumnSpec(_Strict):
    """One column of the data contract."""

    type: Literal["string", "category", "integer", "number", "datetime"]
    nullable: bool = False
    allowed: list[str] | None = None
    min: float | None = None
    max: float | None = None
    impute: Literal["median", "mean"] | float | None = Field(
        default=None, description="numeric columns: how missing values are filled (default median)"
    )
    format: str | None = Field(default=None, description="datetime columns: a strptime format (default ISO 8601)")
    earliest: date | None = Field(default=None, description=(
        "datetime columns: the earliest plausible day; a value before it is quarantined, or refused in a request "
        "(a transaction of 1947 in a 1997 log)"))
    latest: date | None = Field(default=None, description="datetime columns: the latest plausible day, as earliest")
    strip: str | None = Field(default=None, min_length=1, description=(
        "integer and number columns: characters removed from each cell of the data before it is read, such as a "
        "currency sign, thousands separators or a percent sign ('$,%'); a request sends the number itself"))
    decimal: Literal[".", ","] = Field(default=".", description=(
        "integer and number columns: the decimal mark the data writes numbers with. ',' (European exports, "
        "'1.234,56'): '.' and spaces grouping thousands are removed and ',' is read as the decimal point, and a "
        "cell with any other '.' is not a number; a request sends the number itself, a JSON number"))

    @model_validator(mode="after")
    def _options_fit_type(self) -> ColumnSpec:
        numeric = self.type in ("integer", "number")
        if not numeric and (self.min is not None or self.max is not None or self.impute is not None):
            raise ValueError(f"min, max and impute apply to integer and number columns, not {self.type}")
        if self.allowed is not None and self.type != "category":
            raise ValueError("allowed applies to category columns only")
        dated = (self.format, self.earliest, self.latest)
        if any(option is not None for option in dated) and self.type != "datetime":
            raise ValueError("format, earliest and latest apply to datetime columns only")
        if self.earliest is not None and self.latest is not None and self.earliest > self.latest:
            raise ValueError(f"earliest {self.earliest} is after latest {self.latest}")
        if self.strip is not None and not numeric:
            raise ValueError("strip applies to integer and number columns only")
        if self.decimal != "." and not numeric:
            raise ValueError("decimal applies to integer and number columns only")
        if self.decimal == "," and self.strip is not None and "," in self.strip:
            raise ValueError(f"strip {self.strip!r} with decimal ',': ',' is this column's decimal mark, which "
                             "strip would remove ('2,5' read as 25); leave ',' out of strip")
        if self.strip is not None and set(self.strip) & set(NUMBER_CHARACTERS):
            grouping = (" (with decimal ',', the '.' and spaces grouping thousands are read without strip)"
                        if self.decimal == "," else "")
            raise ValueError(f"strip {self.strip!r}: digits, signs, '.' and exponents are part of a number; "
                             f"strip only what surrounds or groups it{grouping}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    @property
    def is_numeric(self) -> bool:
        return self.type in ("integer", "number")


class LabelSpec(_Strict):
    column: str
    positive: str | None = Field(default=None, description="binary: the label value that means 1")
    values: list[str] | None = Field(default=None, description="binary: every allowed label value")


class SplitSpec(_Strict):
    """stratified: seeded random (by label for binary tasks); time: the latest rows are test;
    latest: the rows at the latest time_column value are test (a snapshot scored at a cut-off),
    valid is drawn from the earlier rows by the first id column."""

    method: Literal["stratified", "time", "latest"] = "stratified"
    test_size: float = Field(default=0.2, gt=0, lt=1)
    valid_size: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 42


class GateSpec(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _has_a_bound(self) -> GateSpec:
        if self.min is None and self.max is None:
            raise ValueError("a gate needs min or max")
        return self


def gate_bounds(gate: Mapping[str, Any]) -> str:
    """A gate's bounds (a decided gate, or a GateSpec dumped) as text: ">= 0.8", "<= 0.1", or both."""
    return " ".join(bound for bound in (f">= {gate['min']}" if gate["min"] is not None else "",
                                        f"<= {gate['max']}" if gate["max"] is not None else "") if bound)


class CostSpec(_Strict):
    """Business cost of each outcome, in any one currency unit, for the decision threshold. A flag must be able to
    pay: a missed positive costs more than a caught one, and a false alarm costs something; otherwise the
    cost-optimal threshold flags nobody (or everybody), and threshold-free gates would still pass it."""

    false_negative: float = Field(ge=0, allow_inf_nan=False)
    false_positive: float = Field(ge=0, allow_inf_nan=False)
    true_positive: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _a_flag_can_pay(self) -> "CostSpec":
        if self.false_negative <= self.true_positive:
            raise ValueError(f"false_negative ({self.false_negative:g}) must be above true_positive "
                             f"({self.true_positive:g}): a flag that costs as much as the positive it catches never "
                             "pays, so the threshold would flag nobody")
        if self.false_positive == 0:
            raise ValueError("false_positive is 0: a false alarm that costs nothing makes flagging every row the "
                             "cheapest rule; give what reviewing one costs")
        return self


class FeaturesSpec(_Strict):
    """Automated feature engineering (flowline/features/engineering.py)."""

    search: bool = Field(default=True, description="choose encodings and generated features on validation")
    search_min_rows: int = Field(default=2000, ge=0, description=(
        "search only with at least this many train + valid rows, or an entity_column (its windows are searched); "
        "fewer: encodings by cardinality and numbers as they are, since gains on so small a valid split are noise"))
    entity_column: str | None = Field(
        default=None, description="a repeated key (customer, card) for recency and rolling windows over time_column"
    )
    amount_columns: list[str] = Field(default=[], description="numeric columns summed per entity over those windows")
    max_generated: int = Field(default=5, ge=0, description="at most this many interaction or time features")
    native_categorical: bool | Literal["auto"] = Field(
        default="auto", description="xgboost, forest and lightgbm split categorical columns on category codes "
                                    "(XGBoost's and LightGBM's native categorical splits) instead of their "
                                    "encodings: true for every categorical column; auto for those with more "
                                    "categories than one-hot indicators take (15), which are target-encoded by "
                                    "default; false for none. linear, mlp and catboost keep the encodings")
    entity_features_from: str | None = Field(
        default=None, description="reuse the entity-feature definition of this use case, by its name (NAME.yaml "
                                  "beside this file, else a built-in use case): its entity_column, time_column, "
                                  "amount_columns and window outputs, and so its online state")
    entity_outputs: list[list[str | float]] | None = Field(
        default=None, description="the entity window outputs to use as they are, without searching them: "
                                  "[recency], [count, SECONDS], [sum, SECONDS, AMOUNT_COLUMN]; with "
                                  "entity_features_from, filled in from the owner's champion package when run")

    @field_validator("entity_outputs")
    @classmethod
    def _outputs_are_well_formed(cls, outputs: list[list] | None) -> list[list] | None:
        shapes = {"recency": (str,), "count": (str, float), "sum": (str, float, str)}
        for output in outputs or []:
            shape = shapes.get(output[0]) if output else None
            if shape is None or len(output) != len(shape) or not all(
                    isinstance(part, kind) for part, kind in zip(output, shape)):
                raise ValueError(f"{output}: give [recency], [count, SECONDS] or [sum, SECONDS, AMOUNT_COLUMN]")
        return outputs


def _default_families() -> dict[str, int]:
    return {"xgboost": 30, "linear": 20, "forest": 12, "mlp": 16, "lightgbm": 30}


MAX_TRIALS = 100_000  # per family; Katib's maxTrialCount is an int32, and no search here needs more


class TuningSpec(_Strict):
    """The search budget: trials per candidate family (reproducible), or a wall-clock `time_budget`
    spent across the families (flowline/budget.py), and where the trials run."""

    backend: Literal["auto", "optuna", "katib"] = Field(
        default="auto", description="auto: Katib inside a cluster, Optuna elsewhere"
    )
    families: dict[Family, int] = Field(default_factory=_default_families, min_length=1)
    parallel_trials: int = Field(default=3, ge=1, description="Katib: trials running at once")
    timeout_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="per family")
    time_budget: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="seconds for the whole search, spent across the families cost-aware; "
                                        "each family's trials in `families` is then its cap. None: trials decide")
    trial_seconds: float = Field(default=60, gt=0, allow_inf_nan=False, description="Katib with a time_budget: the declared seconds "
                                                               "one trial takes in its pod, start included")
    metric: Literal["roc_auc", "auprc"] = Field(
        default="roc_auc", description="binary tasks: the validation score that trials, pruning, feature selection "
                                       "and the blend maximise; auprc (average precision) suits rare positives. "
                                       "Regression minimises RMSE")
    early_stopping_rounds: int = Field(default=50, ge=1)
    max_boost_rounds: int = Field(default=1000, ge=1)
    max_epochs: int = Field(default=200, ge=1, description="MLP training epochs, early-stopped on valid")
    mlp_max_steps: int = Field(
        default=20_000, ge=1, description="MLP: mini-batch steps one fit may take at most (its epochs are cut to "
                                          "fit), so that one fit's cost stops growing with the rows")
    search_rows: int | None = Field(
        default=20_000, ge=100, description="feature selection and search fit on a seeded sample of this many "
                                            "train rows (stratified by the label for binary tasks) and the same "
                                            "share of valid when train has more; final models fit on all rows. "
                                            "None: all rows")
    cv_max_rows: int = Field(default=2000, ge=0, description=(
        "at most this many train + valid rows: each trial is scored by 5-fold cross-validation over train + valid "
        "rather than on valid alone, whose few rows would choose the parameters by their noise (0: never)"))
    class_weighting: bool = Field(
        default=False, description="binary: tune the positive class's weight (xgboost, forest, lightgbm, "
                                   "catboost) and balanced weighting (linear), for imbalanced labels")
    objective: Literal["squared_error", "tweedie"] = Field(
        default="squared_error", description="regression: the loss the xgboost, forest, lightgbm, catboost and "
                                             "linear families minimise; tweedie (log link) suits non-negative, "
                                             "skewed targets such as spend, many of them zero")
    tweedie_power: float = Field(default=1.5, gt=1, lt=2, description="tweedie: the variance power")
    seed: int = Field(default=42, ge=0, lt=2**32, description="seeds the search (NumPy's and Katib's take 0 to 2**32 - 1)")

    @field_validator("families")
    @classmethod
    def _trials_are_positive(cls, families: dict[str, int]) -> dict[str, int]:
        for family, trials in families.items():
            if not 1 <= trials <= MAX_TRIALS:
                raise ValueError(f"{family}: give 1 to {MAX_TRIALS:,} trials, or leave the family out")
        return families


class EnsembleSpec(_Strict):
    top_k: int = Field(default=3, ge=1, description="blend at most this many of the best candidates")
    folds: int = Field(default=5, ge=2, le=20, description="folds for the out-of-fold predictions the choice is made on "
                                                          "(each family is fitted once per fold)")
    bag_max_rows: int = Field(default=2000, ge=0, description=(
        "at most this many train + valid rows: serve each chosen family's fold models, averaged, instead of one "
        "model refitted on all rows (0: always refit)"))
    average_trials: int = Field(default=5, ge=1, description=(
        "serve each refitted boosted family (xgboost, lightgbm, catboost) as the average of its search's this many "
        "best trials, each cross-fitted and refitted as one trial alone is (1: its best trial alone). A bagged "
        "family (bag_max_rows) keeps its best trial: it is already an average of fold models"))


class ChampionSpec(_Strict):
    """The champion/challenger decision on the test split."""

    alpha: float = Field(default=0.05, gt=0, lt=1, description="one-sided significance level for promotion")


class MitigationSpec(_Strict):
    """Per-group decision thresholds for the groups of the attributes whose fairness gate fails, fitted
    on train + valid's out-of-fold predictions (components/bias/mitigation.py).

    By default each group gets one threshold (a higher score never gets a worse decision), chosen to
    minimise the use case's expected cost while every group's rate under `constraint` lies within
    `tolerance` of the others'. It is applied only when it brings every fairness gate within bounds
    at an expected cost at most `max_cost_increase` above the single threshold's. `randomized: true`
    serves fairlearn's ThresholdOptimizer instead, whose rule draws some decisions at random (exact
    equalized odds can need that), maximising `objective`."""

    enabled: bool = False
    constraint: Literal["demographic_parity", "equalized_odds", "true_positive_rate_parity",
                        "false_positive_rate_parity"] = "equalized_odds"
    tolerance: float = Field(default=0.05, gt=0, lt=1,
                             description="largest gap allowed between the groups' constrained rates")
    max_cost_increase: float = Field(default=0.10, ge=0,
                                     description="largest relative rise in expected cost worth the mitigation")
    randomized: bool = Field(default=False, description="serve fairlearn's randomised ThresholdOptimizer rule")
    objective: Literal["balanced_accuracy_score", "accuracy_score"] = Field(
        default="balanced_accuracy_score", description="what a randomized rule maximises under the constraint")


class FairnessSpec(_Strict):
    """How the bias step judges the decisions for each of `sensitive_attributes` (binary tasks)."""

    gates: dict[str, GateSpec] = Field(default={}, description="bounds on " + ", ".join(FAIRNESS_METRICS))
    bands: dict[str, list[float]] = Field(
        default={}, description="numeric sensitive attributes cut into bands at these increasing edges "
                                "(Age: [26, 41] gives <26, [26, 41) and >=41)")
    min_group_rows: int = Field(default=30, ge=1, description="smaller groups are reported, not compared")
    mitigation: MitigationSpec = MitigationSpec()

    @field_validator("gates")
    @classmethod
    def _known_metrics(cls, gates: dict[str, GateSpec]) -> dict[str, GateSpec]:
        for metric in gates:
            if metric not in FAIRNESS_METRICS:
                raise ValueError(f"unknown fairness metric {metric!r}; known: {', '.join(FAIRNESS_METRICS)}")
        return gates

    @field_validator("bands")
    @classmethod
    def _edges_increase(cls, bands: dict[str, list[float]]) -> dict[str, list[float]]:
        for column, edges in bands.items():
            if not edges or any(low >= high for low, high in zip(edges, edges[1:])):
                raise ValueError(f"{column}: give one or more strictly increasing edges")
        return bands


class TransactionsSpec(_Strict):
    """The data is a transaction log: one row per event of an entity (customer, card) with an amount.

    A customer-rows step turns it into one row per entity and cut-off
    (components/customers): features from the entity's transactions up to the cut-off,
    and as the label the amount it spends over the `horizon_days` after it. The model
    is applied at `calibration_end`; it learns from rows at the earlier
    `training_cutoffs`, each labelled with the spend between its cut-off and
    calibration_end scaled to the horizon, so that nothing after calibration_end is
    ever learned from. The spend after calibration_end labels the test rows only.
    """

    entity_column: str
    amount_column: str
    calibration_end: date = Field(description="the last day of known history; the model is applied here")
    horizon_days: int = Field(ge=1, description="the label: the amount spent over this many days after a cut-off")
    training_cutoffs: list[date] = Field(min_length=1, description="earlier cut-offs that label the training rows")

    @model_validator(mode="after")
    def _cutoffs_precede_calibration_end(self) -> TransactionsSpec:
        for cutoff in self.training_cutoffs:
            if cutoff >= self.calibration_end:
                raise ValueError(f"training cut-off {cutoff} is not before calibration_end {self.calibration_end}")
        return self


class UseCase(_Strict):
    name: str
    description: str = ""
    intended_use: str = Field(default="", description="the model card: who uses the predictions, for what, and "
                                                      "what they must not be used for")
    limitations: list[str] = Field(default=[], description="the model card: known limits of the data and model")
    task: Literal["binary", "regression"]
    data: DataSpec
    label: LabelSpec
    columns: dict[str, ColumnSpec] = Field(min_length=1)
    id_columns: list[str] = []
    time_column: str | None = None
    transactions: TransactionsSpec | None = None
    transaction_log: UseCase | None = Field(
        default=None, description="customer rows (customer_rows.py): the transaction log's use case they are built "
                                  "from, whose contract and transactions say how to score a customer from its "
                                  "transactions")
    segments: dict[str, int] | None = Field(
        default=None, description="regression: segment names served with each prediction, each with the lowest "
                                  "decile (1-10) of predicted value it covers; one must start at decile 1")
    sensitive_attributes: list[str] = []
    fairness: FairnessSpec = FairnessSpec()
    max_bad_fraction: float = Field(default=0.05, ge=0, le=1)
    undeclared: Literal["error", "warn", "ignore"] = Field(
        default="warn", description="columns in the data the contract does not declare: fail the run naming them "
                                    "(error), print one line naming them (warn), or say nothing (ignore); the "
                                    "profile lists them whatever the setting")
    split: SplitSpec = SplitSpec()
    gates: dict[str, GateSpec] = {}
    costs: CostSpec | None = None
    features: FeaturesSpec = FeaturesSpec()
    tuning: TuningSpec = TuningSpec()
    ensemble: EnsembleSpec = EnsembleSpec()
    champion: ChampionSpec = ChampionSpec()

    @field_validator("name")
    @classmethod
    def _name_is_a_slug(cls, name: str) -> str:
        if not NAME_PATTERN.fullmatch(name):
            raise ValueError("use lower-case letters, digits and '-', starting with a letter (max 41)")
        return name

    @model_validator(mode="after")
    def _references_are_declared(self) -> UseCase:
        reserved = [name for name in [*self.columns, self.label.column] if name in RESERVED_COLUMNS]
        if reserved:
            raise ValueError(f"column {reserved[0]!r}: a name flowline keeps for its quarantines' bookkeeping; "
                             "rename it in the data")
        if self.label.column in self.columns:
            raise ValueError(f"label column {self.label.column!r} is declared in label, not in columns")
        for field, names in [
            ("id_columns", self.id_columns),
            ("sensitive_attributes", self.sensitive_attributes),
            ("time_column", [self.time_column] if self.time_column else []),
            ("features.entity_column", [self.features.entity_column] if self.features.entity_column else []),
            ("features.amount_columns", self.features.amount_columns),
            ("transactions", [self.transactions.entity_column, self.transactions.amount_column]
             if self.transactions else []),
        ]:
            for name in names:
                if name not in self.columns:
                    raise ValueError(f"{field}: column {name!r} is not declared in columns")
        if self.task == "binary":
            if not self.label.values or self.label.positive is None:
                raise ValueError("a binary task needs label.values and label.positive")
            if self.label.positive not in self.label.values:
                raise ValueError(f"label.positive {self.label.positive!r} is not one of label.values")
            if self.costs is None:
                raise ValueError("a binary task needs costs (false_negative, false_positive)")
        elif self.label.positive is not None or self.label.values is not None:
            raise ValueError("label.positive and label.values apply to binary tasks only")
        if self.split.method in ("time", "latest") and not self.time_column:
            raise ValueError(f"split.method {self.split.method!r} needs time_column")
        if self.split.method == "latest" and not (self.id_columns or self.transactions):
            raise ValueError("split.method 'latest' needs id_columns: valid is drawn by the first one")
        if self.transactions:
            if self.split.method != "latest":
                raise ValueError("transactions: split.method must be 'latest' (test: the rows at calibration_end)")
            if self.task != "regression" or not self.time_column:
                raise ValueError("transactions: needs a regression task and time_column (the transaction time)")
            if self.columns[self.time_column].type != "datetime":
                raise ValueError(f"transactions: time_column {self.time_column!r} must be a datetime column")
            if not self.columns[self.transactions.amount_column].is_numeric:
                raise ValueError(f"transactions.amount_column {self.transactions.amount_column!r} is not numeric")
        if self.transaction_log is not None and self.transaction_log.transactions is None:
            raise ValueError("transaction_log: needs a transactions section (the log customer rows are built from)")
        if self.segments is not None:
            if self.task != "regression":
                raise ValueError("segments apply to regression tasks")
            if 1 not in self.segments.values() or not all(1 <= d <= 10 for d in self.segments.values()):
                raise ValueError("segments: give each a lowest decile from 1 to 10, one of them 1")
            if len(set(self.segments.values())) != len(self.segments):
                raise ValueError("segments: two segments start at the same decile")
        if self.sensitive_attributes and self.task != "binary":
            raise ValueError("sensitive_attributes: fairness is measured on binary decisions; leave them out")
        for name in self.fairness.bands:
            if name not in self.sensitive_attributes:
                raise ValueError(f"fairness.bands: {name!r} is not one of sensitive_attributes")
            if not self.columns[name].is_numeric:
                raise ValueError(f"fairness.bands: column {name!r} is not numeric")
        if self.tuning.class_weighting and self.task != "binary":
            raise ValueError("tuning.class_weighting applies to binary tasks")
        if self.tuning.metric != "roc_auc" and self.task != "binary":
            raise ValueError("tuning.metric applies to binary tasks; a regression search minimises RMSE")
        if self.tuning.objective != "squared_error" and self.task != "regression":
            raise ValueError("tuning.objective applies to regression tasks")
        if self.time_column and self.columns[self.time_column].type not in ("datetime", "integer", "number"):
            raise ValueError(f"time_column {self.time_column!r} must be a datetime or numeric column")
        if self.features.entity_column and not self.time_column:
            raise ValueError("features.entity_column needs time_column: its windows run over time")
        for where, entity in (("features.entity_column", self.features.entity_column),
                              ("transactions.entity_column", self.transactions and self.transactions.entity_column)):
            if entity and entity in self.columns and self.columns[entity].is_numeric:
                # The contract reads a number as a float (card 18 as 18.0) but a request sends 18: keys would
                # differ between the fitted history, served requests and batch scoring. A key is text.
                raise ValueError(f"{where}: column {entity!r} is a key, not a quantity: declare it "
                                 f"{{type: string}}, even when its values are digits")
        reused = self.features.entity_features_from
        if reused == self.name:
            raise ValueError("features.entity_features_from: names this use case itself; leave it out to own the "
                             "definition")
        if reused and not self.features.entity_column:
            raise ValueError(f"features.entity_features_from: the definition of {reused!r} is not filled in; load "
                             f"the use case with load_use_case or parse_use_case, which read it")
        if self.features.entity_outputs is not None and not self.features.entity_column:
            raise ValueError("features.entity_outputs needs features.entity_column")
        for output in self.features.entity_outputs or []:
            if output[0] == "sum" and output[2] not in self.features.amount_columns:
                raise ValueError(f"features.entity_outputs: {output[2]!r} is not one of features.amount_columns")
        for name in self.features.amount_columns:
            if not self.columns[name].is_numeric:
                raise ValueError(f"features.amount_columns: column {name!r} is not numeric")
        for name, spec in self.columns.items():
            if spec.type == "datetime" and name != self.time_column:
                raise ValueError(f"column {name!r}: a datetime column must be the time_column")
        known = BINARY_METRICS if self.task == "binary" else REGRESSION_METRICS
        for metric in self.gates:
            if metric not in known:
                raise ValueError(f"gates: unknown metric {metric!r} for a {self.task} task; known: {', '.join(known)}")
        if not self.transactions and not self.feature_columns:
            raise ValueError("columns: no feature column is left once id and time columns are set aside")
        return self

    @property
    def feature_columns(self) -> list[str]:
        """Contract columns encoded as they are: all but ids, the time column and the entity column.

        The time and entity columns enter only through generated time features.
        """
        excluded = set(self.id_columns) | {self.time_column, self.features.entity_column}
        return [name for name in self.columns if name not in excluded]

    @property
    def entity_definition(self) -> str:
        """The name of the entity-feature definition this use case uses, which is also its online store
        namespace: the owner's name when it reuses another's (features.entity_features_from), else its own.

        Two use cases with the same definition share one online state; only the definition's owner
        (`entity_definition == name`) writes its served transactions to the store.
        """
        return self.features.entity_features_from or self.name

    @property
    def subject_columns(self) -> list[str]:
        """Columns whose values name a person or an account: the id columns, and the entity of a
        transaction log or of entity windows. Their values are never written to a profile."""
        entities = [self.transactions.entity_column if self.transactions else None, self.features.entity_column]
        return list(dict.fromkeys([*self.id_columns, *(name for name in entities if name)]))

    def trials_for(self, family: str, override: int = 0) -> int:
        """The trial budget of one family: `override` when above 0, else the use case's."""
        return override or self.tuning.families[family]

"""BG/NBD + Gamma-Gamma baseline for customer lifetime value on CDNOW (no flowline imports).

    build/btyd-venv/bin/python tests/benchmark/bgnbd_baseline.py TRANSACTIONS_FILE \
        --calibration-end 1997-09-30 --holdout-end 1998-06-30 --out FILE.csv

Runs in its own venv with lifetimes 0.11.3 (see the Makefile for the pins). TRANSACTIONS_FILE is
the CDNOW master log: whitespace separated, header `customer_id date number_of_cds dollar_value`,
dates YYYYMMDD. The Fader & Hardie protocol: lifetimes' calibration_and_holdout_data summarises
each customer with time in weeks (freq="D", freq_multiplier=7; same-day transactions combined into
one, their dollars summed); BetaGeoFitter is fitted on frequency/recency/T in the calibration
period, GammaGammaFitter on the repeat buyers' mean spend (both penalizer 0).
Predicted holdout spend = expected transactions in the holdout weeks x Gamma-Gamma conditional
expected average spend (for frequency 0 that is the population mean p*v/(q-1), which
conditional_expected_average_profit returns). Actual holdout spend = the sum of dollar_value in the
holdout period; actual transactions = frequency_holdout (distinct purchase days).
Writes one row per customer (customer_id, predicted_transactions, predicted_spend,
actual_transactions, actual_spend) and prints the fitted parameters and a summary line.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import calibration_and_holdout_data
from scipy.stats import spearmanr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("transactions")
    parser.add_argument("--calibration-end", default="1997-09-30")
    parser.add_argument("--holdout-end", default="1998-06-30")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    started = time.monotonic()

    tx = pd.read_csv(args.transactions, sep=r"\s+", dtype={"customer_id": str, "date": str})
    tx["date"] = pd.to_datetime(tx["date"], format="%Y%m%d")
    cal_end, holdout_end = pd.Timestamp(args.calibration_end), pd.Timestamp(args.holdout_end)

    summary = calibration_and_holdout_data(
        tx, "customer_id", "date", calibration_period_end=cal_end, observation_period_end=holdout_end,
        freq="D", freq_multiplier=7, monetary_value_col="dollar_value")

    bgf = BetaGeoFitter(penalizer_coef=0.0).fit(summary["frequency_cal"], summary["recency_cal"], summary["T_cal"])
    repeat = summary[(summary["frequency_cal"] > 0) & (summary["monetary_value_cal"] > 0)]
    ggf = GammaGammaFitter(penalizer_coef=0.0).fit(repeat["frequency_cal"], repeat["monetary_value_cal"])

    weeks = summary["duration_holdout"].iloc[0]  # 273 days / 7 = 39 weeks
    predicted_tx = bgf.conditional_expected_number_of_purchases_up_to_time(
        weeks, summary["frequency_cal"], summary["recency_cal"], summary["T_cal"])
    spend_per_tx = ggf.conditional_expected_average_profit(summary["frequency_cal"], summary["monetary_value_cal"])

    in_holdout = tx[(tx["date"] > cal_end) & (tx["date"] <= holdout_end)]
    actual_spend = in_holdout.groupby("customer_id")["dollar_value"].sum().reindex(summary.index, fill_value=0.0)

    result = pd.DataFrame({
        "predicted_transactions": predicted_tx,
        "predicted_spend": predicted_tx * spend_per_tx,
        "actual_transactions": summary["frequency_holdout"].astype(int),
        "actual_spend": actual_spend,
    }, index=summary.index).rename_axis("customer_id").reset_index()
    assert len(result) == tx["customer_id"].nunique()
    result.to_csv(args.out, index=False)

    error = result["predicted_spend"] - result["actual_spend"]
    print("BG/NBD params:", {k: round(v, 4) for k, v in bgf.params_.items()})
    print("Gamma-Gamma params:", {k: round(v, 4) for k, v in ggf.params_.items()},
          f"(fitted on {len(repeat)} repeat buyers)")
    print(f"customers={len(result)} MAE=${error.abs().mean():.2f} RMSE=${np.sqrt((error ** 2).mean()):.2f} "
          f"Spearman={spearmanr(result['predicted_spend'], result['actual_spend'])[0]:.4f} "
          f"spend predicted=${result['predicted_spend'].sum():,.0f} actual=${result['actual_spend'].sum():,.0f} "
          f"repeat transactions predicted={result['predicted_transactions'].sum():,.0f} "
          f"actual={result['actual_transactions'].sum():,} wall={time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()

"""Moved to :mod:`nidsflow.deploy.scoring` (scoring captures is deployment); kept so old imports work."""

from nidsflow.deploy.scoring import CSV_COLUMNS, NewCaptureError, iter_capture_flows, main, score_capture

__all__ = ["CSV_COLUMNS", "NewCaptureError", "iter_capture_flows", "main", "score_capture"]

if __name__ == "__main__":
    raise SystemExit(main())

package report

import "errors"

// ErrNoData is returned by Analyze when a run has no forward or no backward
// points to measure.
var ErrNoData = errors.New("report: no trajectory points")

// ErrThresholds is returned for thresholds that cannot decide a verdict.
var ErrThresholds = errors.New("report: invalid thresholds")

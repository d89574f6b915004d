package main

import "github.com/replay-sgd/replay/api"

// resume shares its body with pause (stateChange in pause.go).
var resumeCmd = command{
	name:     "resume",
	synopsis: "RUN",
	summary:  "resume a paused run, or revive one that could not start once its cause is fixed",
	example:  "replayctl resume fmnist",
	run:      stateChange((*api.Client).Resume),
}

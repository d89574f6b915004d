package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	run := run
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "worker" {
		run, args = runWorker, args[1:] // worker.go
	}
	if err := run(args, os.Stdout, os.Stderr); err != nil {
		// One line, even for joined errors.
		fmt.Fprintln(os.Stderr, "replayd: "+strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}

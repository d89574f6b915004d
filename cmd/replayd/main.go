package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		// One line, even for joined errors.
		fmt.Fprintln(os.Stderr, "replayd: "+strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}

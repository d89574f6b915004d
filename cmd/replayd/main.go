// Command replayd is the replay daemon: it trains runs forward, computes
// their backward iterates at bounded cost and serves the HTTP/JSON API.
// See run for the flags.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "replayd: "+err.Error())
		os.Exit(1)
	}
}

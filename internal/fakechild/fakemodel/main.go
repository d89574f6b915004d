// Command fakemodel is the fake child of package fakechild as a program, for
// end-to-end tests of replayd: `replayd --model-cmd fake=/path/fakemodel`
// registers it as a real Python worker would be (the same protocol; the
// mode in EXTMODEL_FAKE_CHILD).
package main

import "github.com/replay-sgd/replay/internal/fakechild"

func main() { fakechild.Main() }

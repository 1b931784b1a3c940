package main

import (
	_ "unsafe" // go:linkname

	"helm.sh/helm/v4/pkg/cli"
)

// helm keeps these in unexported package variables; a process that runs helm's command line more
// than once has to reset them (resetGlobals), as helm's own tests do for settings (pkg/cmd's
// resetEnv). The linker checks that each name exists with the pinned modules.

//go:linkname helmSettings helm.sh/helm/v4/pkg/cmd.settings
var helmSettings *cli.EnvSettings

//go:linkname cobraInitializers github.com/spf13/cobra.initializers
var cobraInitializers []func()

//go:linkname cobraFinalizers github.com/spf13/cobra.finalizers
var cobraFinalizers []func()

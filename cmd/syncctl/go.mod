module github.com/vomosync/vomosync/cmd/syncctl

go 1.26.8

require (
	github.com/vomosync/vomosync/pkg v0.0.0
	github.com/vomosync/vomosync/proto v0.0.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	github.com/vomosync/vomosync/services/vomosim v0.0.0
)

replace (
	github.com/vomosync/vomosync/pkg => ../../pkg
	github.com/vomosync/vomosync/proto => ../../proto
)

replace github.com/vomosync/vomosync/services/vomosim => ../../services/vomosim

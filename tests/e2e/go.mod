module github.com/vomosync/vomosync/tests/e2e

go 1.26.8

require (
	github.com/vomosync/vomosync/pkg v0.0.0
	github.com/vomosync/vomosync/proto v0.0.0
	github.com/vomosync/vomosync/services/vomosim v0.0.0
)

replace (
	github.com/vomosync/vomosync/pkg => ../../pkg
	github.com/vomosync/vomosync/proto => ../../proto
	github.com/vomosync/vomosync/services/vomosim => ../../services/vomosim
)

module github.com/vomosync/vomosync/tests/chaos

go 1.26.8

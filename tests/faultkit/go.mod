module github.com/vomosync/vomosync/tests/faultkit

go 1.26.8

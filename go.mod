module github.com/dktscore/dktscore

go 1.26.8

require (
	github.com/apache/arrow-go/v18 v18.8.0 // indirect
	github.com/caarlos0/env/v11 v11.4.2 // indirect
	github.com/wamuir/graft v0.10.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

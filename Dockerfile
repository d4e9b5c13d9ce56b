# One image with the manager, the kubectl-kms CLI and the workload agent
# (/kubekms-agent, the sidecar the pod injector adds; the manager's
# --agent-image defaults to this image in the chart): one thing to build,
# sign and scan, and the CLI is at hand in the manager's pod for debugging. Binaries are static and the final
# image is distroless static, running as a numeric non-root user.
#
# The build commands must stay those of `make build` (checked by
# test/packaging).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/manager ./cmd/manager
RUN go build -trimpath -ldflags="-s -w" -o /out/kubectl-kms ./cmd/kubectl-kms
RUN go build -trimpath -ldflags="-s -w" -o /out/kubekms-agent ./cmd/agent

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/manager /out/kubectl-kms /out/kubekms-agent /
USER 65532:65532
ENTRYPOINT ["/manager"]

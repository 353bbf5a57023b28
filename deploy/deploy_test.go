package deploy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/serving"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// knownEnv is every DKTSCORE_* variable the worker reads: serve's declared
// settings plus the gpu package's (set by the supervisor for its children).
// A manifest that sets any other is a typo the worker would silently ignore.
func knownEnv(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{gpu.EnvGPUs: true, gpu.EnvMemoryFraction: true, gpu.EnvAllowGrowth: true}
	var cfg serving.Config
	for _, name := range serving.Settings(&cfg).Names() {
		known[name] = true
	}
	return known
}

func checkEnv(t *testing.T, where string, env map[string]string, known map[string]bool) {
	t.Helper()
	for k := range env {
		if strings.HasPrefix(k, "DKTSCORE_") && !known[k] {
			t.Errorf("%s sets %s, which dktscore serve does not read", where, k)
		}
	}
	if env["DKTSCORE_MODEL"] != "/models/dkt" {
		t.Errorf("%s: DKTSCORE_MODEL=%q, want the mounted /models/dkt", where, env["DKTSCORE_MODEL"])
	}
	frac, err := strconv.ParseFloat(env[gpu.EnvMemoryFraction], 64)
	if err != nil {
		t.Errorf("%s: %s=%q: %v", where, gpu.EnvMemoryFraction, env[gpu.EnvMemoryFraction], err)
	}
	sel, err := gpu.ParseSelection(env[gpu.EnvGPUs])
	if err != nil {
		t.Errorf("%s: %v", where, err)
	} else if _, err := gpu.Plan(nil, sel, frac, false); err != nil {
		t.Errorf("%s: the GPU settings fail the worker's own validation: %v", where, err)
	}
}

// The compose file is loaded by compose-go, the library `docker compose` itself
// uses: it validates against the Compose JSON schema, interpolates and
// normalises. Then the GPU reservation and the worker's wiring are asserted.
func TestComposeFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts, err := cli.NewProjectOptions([]string{"docker-compose.yml"},
		cli.WithWorkingDirectory("."), cli.WithName("dktscore"), cli.WithEnv([]string{}))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("compose-go rejects deploy/docker-compose.yml: %v", err)
	}
	worker, ok := project.Services["worker"]
	if !ok {
		t.Fatalf("no worker service; services: %v", project.ServiceNames())
	}
	if worker.Deploy == nil || worker.Deploy.Resources.Reservations == nil {
		t.Fatal("worker has no deploy.resources.reservations")
	}
	devs := worker.Deploy.Resources.Reservations.Devices
	if len(devs) != 1 || devs[0].Driver != "nvidia" || !slices.Equal(devs[0].Capabilities, []string{"gpu"}) || devs[0].Count != -1 {
		t.Errorf("GPU reservation %+v, want driver nvidia, capabilities [gpu], count all", devs)
	}
	if worker.Build == nil || worker.Build.Dockerfile != "Dockerfile.gpu" || filepath.Base(worker.Build.Context) != filepath.Base(mustAbs(t, "..")) {
		t.Errorf("worker build %+v, want Dockerfile.gpu in the repository root", worker.Build)
	}
	if dep, ok := worker.DependsOn["kafka"]; !ok || dep.Condition != "service_healthy" {
		t.Errorf("worker does not wait for a healthy kafka: %+v", worker.DependsOn)
	}
	if _, ok := project.Services["kafka"]; !ok {
		t.Error("no kafka service")
	}
	env := map[string]string{}
	for k, v := range worker.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	checkEnv(t, "compose worker", env, knownEnv(t))
	if env["DKTSCORE_KAFKA_BROKERS"] != "kafka:9092" {
		t.Errorf("worker brokers %q, want the kafka service", env["DKTSCORE_KAFKA_BROKERS"])
	}
	if len(worker.Volumes) != 1 || worker.Volumes[0].Target != "/models" || !worker.Volumes[0].ReadOnly {
		t.Errorf("worker volumes %+v, want models read-only at /models", worker.Volumes)
	}
	if worker.StopGracePeriod == nil || time.Duration(*worker.StopGracePeriod) <= 30*time.Second {
		t.Errorf("stop_grace_period %v must exceed DKTSCORE_SHUTDOWN_TIMEOUT (30s)", worker.StopGracePeriod)
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// scaledObject mirrors the fields of KEDA's keda.sh/v1alpha1 ScaledObject this
// project uses (apis/keda/v1alpha1/scaledobject_types.go). Decoded strictly, a
// misspelt or misplaced field fails; KEDA's own Go module is not imported
// because its module graph would drag cloud SDKs into go.mod.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig *struct {
				Behavior *struct {
					ScaleDown *struct {
						StabilizationWindowSeconds *int32 `json:"stabilizationWindowSeconds,omitempty"`
						Policies                   []struct {
							Type          string `json:"type"`
							Value         int32  `json:"value"`
							PeriodSeconds int32  `json:"periodSeconds"`
						} `json:"policies,omitempty"`
					} `json:"scaleDown,omitempty"`
				} `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

type manifests struct {
	deployments []appsv1.Deployment
	services    []corev1.Service
	pdbs        []policyv1.PodDisruptionBudget
	configMaps  []corev1.ConfigMap
	scaled      []scaledObject
}

// loadManifests decodes every document of deploy/k8s/*.yaml into the
// Kubernetes API's own Go types, strictly: an unknown or misplaced field, a
// wrong type, or a kind this project does not ship is an error.
func loadManifests(t *testing.T) manifests {
	t.Helper()
	paths, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var m manifests
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s doc %d: %v", path, i, err)
			}
			strict := func(into any) {
				if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
					t.Errorf("%s doc %d (%s %s): %v", path, i, tm.APIVersion, tm.Kind, err)
				}
			}
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				var o appsv1.Deployment
				strict(&o)
				m.deployments = append(m.deployments, o)
			case "v1 Service":
				var o corev1.Service
				strict(&o)
				m.services = append(m.services, o)
			case "policy/v1 PodDisruptionBudget":
				var o policyv1.PodDisruptionBudget
				strict(&o)
				m.pdbs = append(m.pdbs, o)
			case "v1 ConfigMap":
				var o corev1.ConfigMap
				strict(&o)
				m.configMaps = append(m.configMaps, o)
			case "keda.sh/v1alpha1 ScaledObject":
				var o scaledObject
				strict(&o)
				m.scaled = append(m.scaled, o)
			default:
				t.Errorf("%s doc %d: unexpected kind %q %q", path, i, tm.APIVersion, tm.Kind)
			}
		}
	}
	if len(m.deployments) != 1 || len(m.services) != 1 || len(m.pdbs) != 1 || len(m.scaled) != 1 || len(m.configMaps) != 1 {
		t.Fatalf("want one Deployment, Service, PDB, ScaledObject and scrape ConfigMap; got %d %d %d %d %d",
			len(m.deployments), len(m.services), len(m.pdbs), len(m.scaled), len(m.configMaps))
	}
	return m
}

func TestKubernetesStrictDecodingRejectsTypos(t *testing.T) {
	bad := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n"
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(bad), &d); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("strict decoding accepted spec.replica: %v", err)
	}
}

func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	dep := m.deployments[0]
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	podLabels := labels.Set(dep.Spec.Template.Labels)
	if !sel.Matches(podLabels) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", sel, podLabels)
	}
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]

	gpuLimit := c.Resources.Limits["nvidia.com/gpu"]
	if gpuLimit.Cmp(resource.MustParse("1")) != 0 {
		t.Errorf("nvidia.com/gpu limit %v, want 1 per pod", gpuLimit.String())
	}
	for name, want := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if want == nil || want.HTTPGet == nil || want.HTTPGet.Path != name || want.HTTPGet.Port.String() != "http" {
			t.Errorf("probe for %s: %+v", name, want)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("ports %+v", c.Ports)
	}

	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	checkEnv(t, "Deployment", env, knownEnv(t))
	if addr := env["DKTSCORE_HTTP_ADDR"]; !strings.HasSuffix(addr, ":8080") {
		t.Errorf("DKTSCORE_HTTP_ADDR %q does not serve the probed port 8080", addr)
	}
	shutdown, err := time.ParseDuration(env["DKTSCORE_SHUTDOWN_TIMEOUT"])
	if err != nil || pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %v must exceed DKTSCORE_SHUTDOWN_TIMEOUT %v", pod.TerminationGracePeriodSeconds, shutdown)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser != 10001 {
		t.Errorf("pod must run as the image's non-root user 10001: %+v", pod.SecurityContext)
	}
	if dep.Spec.Template.Annotations["prometheus.io/scrape"] != "true" || dep.Spec.Template.Annotations["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations %v do not ask for a /metrics scrape", dep.Spec.Template.Annotations)
	}

	svcSel := labels.SelectorFromSet(m.services[0].Spec.Selector)
	if !svcSel.Matches(podLabels) {
		t.Errorf("Service selector %v misses the pods", svcSel)
	}
	pdb := m.pdbs[0]
	pdbSel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !pdbSel.Matches(podLabels) {
		t.Errorf("PDB selector %v misses the pods (%v)", pdbSel, err)
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Error("PDB sets neither maxUnavailable nor minAvailable")
	}

	so := m.scaled[0]
	if so.Spec.ScaleTargetRef.Name != dep.Name {
		t.Errorf("ScaledObject targets %q, not the Deployment %q", so.Spec.ScaleTargetRef.Name, dep.Name)
	}
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "kafka" {
		t.Fatalf("triggers %+v, want one kafka trigger", so.Spec.Triggers)
	}
	md := so.Spec.Triggers[0].Metadata
	for _, k := range []string{"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} {
		if md[k] == "" {
			t.Errorf("kafka trigger lacks %s", k)
		}
	}
	if lag, err := strconv.Atoi(md["lagThreshold"]); err != nil || lag <= 0 {
		t.Errorf("lagThreshold %q is not a positive integer (KEDA parses it as one)", md["lagThreshold"])
	}
	if md["consumerGroup"] != env["DKTSCORE_KAFKA_GROUP"] || md["topic"] != env["DKTSCORE_KAFKA_INPUT_TOPIC"] || md["bootstrapServers"] != env["DKTSCORE_KAFKA_BROKERS"] {
		t.Errorf("trigger watches %s/%s@%s, the workers consume %s/%s@%s", md["consumerGroup"], md["topic"], md["bootstrapServers"],
			env["DKTSCORE_KAFKA_GROUP"], env["DKTSCORE_KAFKA_INPUT_TOPIC"], env["DKTSCORE_KAFKA_BROKERS"])
	}
	partitions, err := strconv.Atoi(env["DKTSCORE_CREATE_TOPICS_PARTITIONS"])
	if err != nil || so.Spec.MaxReplicaCount == nil || so.Spec.MinReplicaCount == nil {
		t.Fatalf("partitions %q (%v), replica bounds %v..%v", env["DKTSCORE_CREATE_TOPICS_PARTITIONS"], err, so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
	}
	if max := int(*so.Spec.MaxReplicaCount); max > partitions || max < int(*so.Spec.MinReplicaCount) || *so.Spec.MinReplicaCount < 1 {
		t.Errorf("replicas %d..%d: max must be within [min, partitions=%d], min ≥ 1", *so.Spec.MinReplicaCount, max, partitions)
	}
}

// The scrape config is Prometheus YAML inside a ConfigMap: its relabel regexes
// must compile (Prometheus uses Go's RE2 too) and it must keep our pods.
func TestPrometheusScrapeConfig(t *testing.T) {
	cm := loadManifests(t).configMaps[0]
	var cfg struct {
		ScrapeConfigs []struct {
			JobName             string           `json:"job_name"`
			KubernetesSDConfigs []map[string]any `json:"kubernetes_sd_configs"`
			RelabelConfigs      []struct {
				SourceLabels []string `json:"source_labels"`
				Action       string   `json:"action,omitempty"`
				Regex        string   `json:"regex,omitempty"`
				Replacement  string   `json:"replacement,omitempty"`
				TargetLabel  string   `json:"target_label,omitempty"`
			} `json:"relabel_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.UnmarshalStrict([]byte(cm.Data["prometheus.yml"]), &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	if len(cfg.ScrapeConfigs) != 1 || cfg.ScrapeConfigs[0].KubernetesSDConfigs[0]["role"] != "pod" {
		t.Fatalf("scrape configs %+v", cfg.ScrapeConfigs)
	}
	keepsApp := false
	for _, rc := range cfg.ScrapeConfigs[0].RelabelConfigs {
		if _, err := regexp.Compile("^(?:" + rc.Regex + ")$"); err != nil {
			t.Errorf("relabel regex %q: %v", rc.Regex, err)
		}
		if rc.Action == "keep" && slices.Contains(rc.SourceLabels, "__meta_kubernetes_pod_label_app_kubernetes_io_name") && rc.Regex == "dktscore" {
			keepsApp = true
		}
	}
	if !keepsApp {
		t.Error("the scrape job does not select the dktscore pods")
	}
	// The address rewrite must turn a pod IP and the annotated port into a target.
	re := regexp.MustCompile("^(?:" + `([^:]+)(?::\d+)?;(\d+)` + ")$")
	if got := re.ReplaceAllString("10.1.2.3:8080;8080", "$1:$2"); got != "10.1.2.3:8080" {
		t.Errorf("address rewrite gives %q", got)
	}
}

// runtimeImage is what the final stage of a Dockerfile gives a container.
type runtimeImage struct {
	raw        string
	args       map[string]string // global ARGs
	stages     []instructions.Stage
	user       string
	entrypoint []string
	cmd        []string
	expose     []string
	health     *instructions.HealthCheckCommand
	env        map[string]string
	fromBuild  int // COPY --from=build instructions
}

// parseDockerfile runs BuildKit's own Dockerfile parser and instruction
// compiler (what `docker build` runs) and collects the runtime stage's facts.
func parseDockerfile(t *testing.T, file string) runtimeImage {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: buildkit parser: %v", file, err)
	}
	for _, w := range res.Warnings {
		t.Errorf("%s: buildkit warning: %s", file, w.Short)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("%s: buildkit instructions: %v", file, err)
	}
	img := runtimeImage{raw: string(raw), args: map[string]string{}, stages: stages, env: map[string]string{}}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				img.args[kv.Key] = *kv.Value
			}
		}
	}
	if len(stages) < 2 {
		t.Fatalf("%s: %d stages, want a multi-stage build", file, len(stages))
	}
	for _, cmd := range stages[len(stages)-1].Commands {
		switch c := cmd.(type) {
		case *instructions.UserCommand:
			img.user = c.User
		case *instructions.HealthCheckCommand:
			img.health = c
		case *instructions.EntrypointCommand:
			img.entrypoint = c.CmdLine
			if c.PrependShell {
				t.Errorf("%s: ENTRYPOINT in shell form: signals would reach /bin/sh, not dktscore", file)
			}
		case *instructions.CmdCommand:
			img.cmd = c.CmdLine
			if c.PrependShell {
				t.Errorf("%s: CMD in shell form: with an exec-form ENTRYPOINT it would pass \"/bin/sh -c ...\" as arguments", file)
			}
		case *instructions.ExposeCommand:
			img.expose = append(img.expose, c.Ports...)
		case *instructions.CopyCommand:
			if c.From == "build" {
				img.fromBuild++
			}
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				img.env[kv.Key] = kv.Value
			}
		}
	}
	return img
}

// argv is the command line a container of this image runs, given an
// override of the entrypoint and of the arguments (nil: the image's), with
// Docker's and Kubernetes' rule: overriding the entrypoint drops the CMD.
func (img runtimeImage) argv(entrypoint, args []string) []string {
	if entrypoint == nil {
		entrypoint = img.entrypoint
		if args == nil {
			args = img.cmd
		}
	}
	return append(slices.Clone(entrypoint), args...)
}

// The Dockerfiles are parsed by BuildKit, then key facts asserted.
func TestDockerfiles(t *testing.T) {
	tests := []struct {
		file      string
		finalBase string
		buildFrom string
		wheel     string
		gpus      string
	}{
		{"../Dockerfile.gpu", "nvidia/cuda:12.5.1-cudnn-runtime-ubuntu22.04", "ubuntu:22.04", `tensorflow==${TF_VERSION}`, "all"},
		{"../Dockerfile", "debian:bookworm-slim", "golang:1.26.8-bookworm", `tensorflow-cpu==${TF_VERSION}`, "none"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			img := parseDockerfile(t, tt.file)
			expand := func(s string) string {
				return os.Expand(s, func(k string) string { return img.args[k] })
			}
			if got := expand(img.stages[len(img.stages)-2].BaseName); got != tt.buildFrom {
				t.Errorf("build stage FROM %q, want %q", got, tt.buildFrom)
			}
			if img.args["GO_VERSION"] != strings.TrimPrefix(goVersion(t), "go ") {
				t.Errorf("GO_VERSION %q, go.mod says %q", img.args["GO_VERSION"], goVersion(t))
			}
			if img.args["TF_VERSION"] != "2.18.1" {
				t.Errorf("TF_VERSION %q, want 2.18.1 (graft v0.10.0's C API)", img.args["TF_VERSION"])
			}
			if got := expand(img.stages[len(img.stages)-1].BaseName); got != tt.finalBase {
				t.Errorf("runtime base %q, want %q", got, tt.finalBase)
			}
			if uid := strings.Split(img.user, ":")[0]; img.user == "" || uid == "0" || uid == "root" {
				t.Errorf("USER %q: the runtime stage must run as a non-root user", img.user)
			}
			// ENTRYPOINT is the binary alone and CMD the default subcommand, so
			// `docker run IMAGE` serves and `docker run IMAGE model-server ...`
			// replaces only the subcommand and its flags.
			if !slices.Equal(img.entrypoint, []string{"/usr/local/bin/dktscore"}) || !slices.Equal(img.cmd, []string{"serve"}) {
				t.Errorf("ENTRYPOINT %q CMD %q, want [/usr/local/bin/dktscore] [serve]", img.entrypoint, img.cmd)
			}
			if got := img.argv(nil, nil); !slices.Equal(got, []string{"/usr/local/bin/dktscore", "serve"}) {
				t.Errorf("`docker run IMAGE` runs %q", got)
			}
			if got := img.argv(nil, []string{"model-server", "--port=8500"}); !slices.Equal(got, []string{"/usr/local/bin/dktscore", "model-server", "--port=8500"}) {
				t.Errorf("`docker run IMAGE model-server --port=8500` runs %q", got)
			}
			// The ops port and model-server's gRPC and REST ports (TF Serving's).
			for _, port := range []string{"8080", "8500", "8501"} {
				if !slices.Contains(img.expose, port) && !slices.Contains(img.expose, port+"/tcp") {
					t.Errorf("EXPOSE %v lacks %s", img.expose, port)
				}
			}
			if img.health == nil {
				t.Fatal("no HEALTHCHECK")
			}
			test := strings.Join(img.health.Health.Test, " ")
			opsPort := img.env["DKTSCORE_HTTP_ADDR"][strings.LastIndex(img.env["DKTSCORE_HTTP_ADDR"], ":")+1:]
			if img.health.Health.Test[0] != "CMD" || !strings.Contains(test, "127.0.0.1:"+opsPort+"/healthz") {
				t.Errorf("HEALTHCHECK %q does not hit /healthz on the ops port of DKTSCORE_HTTP_ADDR=%q", test, img.env["DKTSCORE_HTTP_ADDR"])
			}
			if img.fromBuild != 2 {
				t.Errorf("runtime copies %d things from the build stage, want the binary and the TF libraries", img.fromBuild)
			}
			if img.env["DKTSCORE_MODEL"] != "/models/dkt" || img.env[gpu.EnvGPUs] != tt.gpus {
				t.Errorf("runtime env %v", img.env)
			}
			if !strings.Contains(img.raw, tt.wheel) || !strings.Contains(img.raw, "link-tensorflow /opt/venv /opt/tflib") {
				t.Errorf("build stage does not install %s and link it like scripts/link-tensorflow", tt.wheel)
			}
			if !strings.Contains(img.raw, "-Wl,-rpath,/opt/dktscore/lib") {
				t.Error("binary's rpath does not point at the runtime's /opt/dktscore/lib")
			}
		})
	}
}

func goVersion(t *testing.T) string {
	raw, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return string(m[1])
}

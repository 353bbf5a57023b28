package deploy

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/modelserver"
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

// serveEnv is every DKTSCORE_* variable `dktscore serve` declares.
func serveEnv() []string {
	var cfg serving.Config
	return serving.Settings(&cfg).Names()
}

// modelServerEnv is every DKTSCORE_* variable `dktscore model-server` reads.
func modelServerEnv() []string {
	var cfg modelserver.Config
	return modelserver.Settings(&cfg).Names()
}

// knownEnv is every DKTSCORE_* variable a subcommand reads: its declared
// settings (names) plus the gpu package's (set by the supervisor for its
// children). A manifest that sets any other is a typo dktscore would ignore.
func knownEnv(t *testing.T, names []string) map[string]bool {
	t.Helper()
	known := map[string]bool{gpu.EnvGPUs: true, gpu.EnvMemoryFraction: true, gpu.EnvAllowGrowth: true}
	for _, name := range names {
		known[name] = true
	}
	return known
}

func checkKnownEnv(t *testing.T, where, subcommand string, env map[string]string, known map[string]bool) {
	t.Helper()
	for k := range env {
		if strings.HasPrefix(k, "DKTSCORE_") && !known[k] {
			t.Errorf("%s sets %s, which dktscore %s does not read", where, k, subcommand)
		}
	}
}

// checkServeEnv checks a `dktscore serve` container's environment.
func checkServeEnv(t *testing.T, where string, env map[string]string) {
	t.Helper()
	checkKnownEnv(t, where, "serve", env, knownEnv(t, serveEnv()))
	if env["DKTSCORE_MODEL"] != "/models/dkt" {
		t.Errorf("%s: DKTSCORE_MODEL=%q, want the mounted /models/dkt", where, env["DKTSCORE_MODEL"])
	}
	checkGPUEnv(t, where, env)
}

// checkGPUEnv runs the GPU settings through the gpu package's own validation.
func checkGPUEnv(t *testing.T, where string, env map[string]string) {
	t.Helper()
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

// modelServerFlags are the tensorflow_model_server flags `dktscore
// model-server` takes, with TF Serving's defaults. PROVISIONAL: the contract's
// list until the modelserver package lands; a flag outside it (say
// --model_config_file) fails here as it would fail model-server.
type modelServerFlags struct {
	port, restAPIPort, pollWaitSeconds, restAPITimeoutMs int
	modelName, modelBasePath, batchingParametersFile     string
	enableBatching                                       bool
}

// parseModelServerArgs checks that argv runs the image's dktscore
// model-server and parses its flags as Go's flag package does (which accepts
// TF Serving's --name=value and bare boolean forms).
func parseModelServerArgs(t *testing.T, where string, argv []string) modelServerFlags {
	t.Helper()
	if len(argv) < 2 || argv[0] != "/usr/local/bin/dktscore" || argv[1] != "model-server" {
		t.Fatalf("%s runs %q, want /usr/local/bin/dktscore model-server ...", where, argv)
	}
	var f modelServerFlags
	fs := flag.NewFlagSet("model-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&f.port, "port", 8500, "")
	fs.IntVar(&f.restAPIPort, "rest_api_port", 0, "")
	fs.StringVar(&f.modelName, "model_name", "default", "")
	fs.StringVar(&f.modelBasePath, "model_base_path", "", "")
	fs.BoolVar(&f.enableBatching, "enable_batching", true, "")
	fs.StringVar(&f.batchingParametersFile, "batching_parameters_file", "", "")
	fs.IntVar(&f.pollWaitSeconds, "file_system_poll_wait_seconds", 1, "")
	fs.IntVar(&f.restAPITimeoutMs, "rest_api_timeout_in_ms", 30000, "")
	if err := fs.Parse(argv[2:]); err != nil {
		t.Fatalf("%s: model-server flags %q: %v", where, argv[2:], err)
	}
	if fs.NArg() != 0 {
		t.Errorf("%s: model-server takes no positional arguments, got %q", where, fs.Args())
	}
	return f
}

// checkModelServerFlags asserts the wiring every model-server manifest shares:
// TF Serving's ports and the origin's model name, so clients change nothing
// but the host, and a model base path on the read-only models mount.
func checkModelServerFlags(t *testing.T, where string, f modelServerFlags, modelsMount string) {
	t.Helper()
	if f.port != 8500 || f.restAPIPort != 8501 {
		t.Errorf("%s: --port=%d --rest_api_port=%d, want TF Serving's 8500 and 8501", where, f.port, f.restAPIPort)
	}
	if f.modelName != "builder" {
		t.Errorf("%s: --model_name=%q, want the origin clients' model_spec.name \"builder\"", where, f.modelName)
	}
	if f.modelBasePath != "/models/dkt" || !strings.HasPrefix(f.modelBasePath, modelsMount+"/") {
		t.Errorf("%s: --model_base_path=%q, want /models/dkt on the models mount %q", where, f.modelBasePath, modelsMount)
	}
	if !f.enableBatching {
		t.Errorf("%s: --enable_batching=false: batching across clients is the point of model-server", where)
	}
}

func portOf(t *testing.T, where, addr string) int {
	t.Helper()
	p, err := strconv.Atoi(addr[strings.LastIndex(addr, ":")+1:])
	if err != nil {
		t.Errorf("%s: address %q has no port: %v", where, addr, err)
	}
	return p
}

func loadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts, err := cli.NewProjectOptions([]string{"docker-compose.yml"},
		cli.WithWorkingDirectory("."), cli.WithName("dktscore"), cli.WithEnv([]string{}), cli.WithProfiles(profiles))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("compose-go rejects deploy/docker-compose.yml (profiles %v): %v", profiles, err)
	}
	return project
}

func composeEnv(s types.ServiceConfig) map[string]string {
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

// The compose file is loaded by compose-go, the library `docker compose` itself
// uses: it validates against the Compose JSON schema, interpolates and
// normalises. Then the GPU reservation and the worker's wiring are asserted.
func TestComposeFile(t *testing.T) {
	project := loadCompose(t)
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
	if argv := parseDockerfile(t, "../Dockerfile.gpu").argv(worker.Entrypoint, worker.Command); !slices.Equal(argv, []string{"/usr/local/bin/dktscore", "serve"}) {
		t.Errorf("worker runs %q, want the image's dktscore serve", argv)
	}
	if dep, ok := worker.DependsOn["kafka"]; !ok || dep.Condition != "service_healthy" {
		t.Errorf("worker does not wait for a healthy kafka: %+v", worker.DependsOn)
	}
	if _, ok := project.Services["kafka"]; !ok {
		t.Error("no kafka service")
	}
	env := composeEnv(worker)
	checkServeEnv(t, "compose worker", env)
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

// The model-server service sits behind its own profile: a plain `up` keeps
// starting Kafka and the worker only, `--profile model-server up model-server`
// starts it. Its argv is the image's ENTRYPOINT plus its command.
func TestComposeModelServer(t *testing.T) {
	if _, ok := loadCompose(t).DisabledServices["model-server"]; !ok {
		t.Error("model-server is not behind a profile: a plain `docker compose up` would start it beside the worker")
	}
	project := loadCompose(t, "model-server")
	ms, ok := project.Services["model-server"]
	if !ok {
		t.Fatalf("no model-server service under profile model-server; services: %v", project.ServiceNames())
	}
	if !slices.Equal(ms.Profiles, []string{"model-server"}) {
		t.Errorf("profiles %v, want [model-server]", ms.Profiles)
	}
	worker := project.Services["worker"]
	if ms.Image != worker.Image || ms.Build == nil || worker.Build == nil || ms.Build.Dockerfile != worker.Build.Dockerfile || ms.Build.Context != worker.Build.Context {
		t.Errorf("model-server image %q build %+v, want the worker's image and build", ms.Image, ms.Build)
	}
	img := parseDockerfile(t, filepath.Join("..", ms.Build.Dockerfile))
	f := parseModelServerArgs(t, "compose model-server", img.argv(ms.Entrypoint, ms.Command))

	if len(ms.Volumes) != 1 || !ms.Volumes[0].ReadOnly || ms.Volumes[0].Source != worker.Volumes[0].Source {
		t.Fatalf("model-server volumes %+v, want the worker's models directory, read-only", ms.Volumes)
	}
	checkModelServerFlags(t, "compose model-server", f, ms.Volumes[0].Target)

	env := composeEnv(ms)
	checkKnownEnv(t, "compose model-server", "model-server", env, knownEnv(t, modelServerEnv()))
	checkGPUEnv(t, "compose model-server", env)
	opsAddr := img.env["DKTSCORE_HTTP_ADDR"]
	if v, ok := env["DKTSCORE_HTTP_ADDR"]; ok {
		opsAddr = v
	}
	// Clients keep host:8500 and host:8501; the ops port is published too.
	published := map[uint32]string{}
	for _, p := range ms.Ports {
		published[p.Target] = p.Published
	}
	for target, want := range map[int]string{f.port: strconv.Itoa(f.port), f.restAPIPort: strconv.Itoa(f.restAPIPort), portOf(t, "compose model-server", opsAddr): ""} {
		got, ok := published[uint32(target)]
		if !ok || (want != "" && got != want) {
			t.Errorf("container port %d published as %q (ports %+v), want %q", target, got, ms.Ports, want)
		}
	}
	for _, p := range ms.Ports {
		for _, q := range worker.Ports {
			if p.Published == q.Published {
				t.Errorf("model-server and worker both publish host port %s", p.Published)
			}
		}
	}
	// TF Serving's model status on the REST port answers once the model is loaded.
	if ms.HealthCheck == nil || ms.HealthCheck.Disable || len(ms.HealthCheck.Test) == 0 || ms.HealthCheck.Test[0] != "CMD" ||
		!slices.Contains(ms.HealthCheck.Test, "http://127.0.0.1:"+strconv.Itoa(f.restAPIPort)+"/v1/models/"+f.modelName) {
		t.Errorf("healthcheck %+v, want GET /v1/models/%s on the REST port %d", ms.HealthCheck, f.modelName, f.restAPIPort)
	}
	if ms.Deploy == nil || ms.Deploy.Resources.Reservations == nil || len(ms.Deploy.Resources.Reservations.Devices) != 1 ||
		ms.Deploy.Resources.Reservations.Devices[0].Driver != "nvidia" || !slices.Equal(ms.Deploy.Resources.Reservations.Devices[0].Capabilities, []string{"gpu"}) {
		t.Errorf("model-server reserves no NVIDIA GPU: %+v", ms.Deploy)
	}
	if len(ms.DependsOn) != 0 {
		t.Errorf("model-server depends on %v; it needs no Kafka", ms.DependsOn)
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
	// The worker (deployment.yaml, pdb.yaml, keda-scaledobject.yaml), the TF
	// Serving replacement (model-server.yaml) and the scrape job, each once.
	for _, c := range []struct {
		kind      string
		got, want []string
	}{
		{"Deployments", names(m.deployments, (*appsv1.Deployment).GetName), []string{"dktscore", "dktscore-model-server"}},
		{"Services", names(m.services, (*corev1.Service).GetName), []string{"dktscore", "dktscore-model-server"}},
		{"PodDisruptionBudgets", names(m.pdbs, (*policyv1.PodDisruptionBudget).GetName), []string{"dktscore", "dktscore-model-server"}},
		{"ScaledObjects", names(m.scaled, (*scaledObject).GetName), []string{"dktscore"}},
		{"ConfigMaps", names(m.configMaps, (*corev1.ConfigMap).GetName), []string{"dktscore-prometheus-scrape"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Fatalf("%s %v, want %v", c.kind, c.got, c.want)
		}
	}
	return m
}

// names lists objects' names, sorted.
func names[T any](objs []T, name func(*T) string) []string {
	var out []string
	for i := range objs {
		out = append(out, name(&objs[i]))
	}
	slices.Sort(out)
	return out
}

// named returns the object called name (loadManifests guarantees one).
func named[T any](objs []T, name func(*T) string, want string) T {
	for i := range objs {
		if name(&objs[i]) == want {
			return objs[i]
		}
	}
	panic("no " + want)
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
	dep := named(m.deployments, (*appsv1.Deployment).GetName, "dktscore")
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
	if argv := parseDockerfile(t, "../Dockerfile.gpu").argv(c.Command, c.Args); !slices.Equal(argv, []string{"/usr/local/bin/dktscore", "serve"}) {
		t.Errorf("worker runs %q, want the image's dktscore serve", argv)
	}

	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	checkServeEnv(t, "Deployment", env)
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

	svcSel := labels.SelectorFromSet(named(m.services, (*corev1.Service).GetName, "dktscore").Spec.Selector)
	if !svcSel.Matches(podLabels) {
		t.Errorf("Service selector %v misses the pods", svcSel)
	}
	pdb := named(m.pdbs, (*policyv1.PodDisruptionBudget).GetName, "dktscore")
	pdbSel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !pdbSel.Matches(podLabels) {
		t.Errorf("PDB selector %v misses the pods (%v)", pdbSel, err)
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Error("PDB sets neither maxUnavailable nor minAvailable")
	}

	so := named(m.scaled, (*scaledObject).GetName, "dktscore")
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

// model-server.yaml runs the image's `dktscore model-server` with TF Serving's
// flags; its ports, probes, Service and PDB are checked against those flags.
func TestKubernetesModelServer(t *testing.T) {
	m := loadManifests(t)
	worker := named(m.deployments, (*appsv1.Deployment).GetName, "dktscore")
	dep := named(m.deployments, (*appsv1.Deployment).GetName, "dktscore-model-server")
	podLabels := labels.Set(dep.Spec.Template.Labels)
	workerLabels := labels.Set(worker.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(podLabels) || sel.Matches(workerLabels) {
		t.Errorf("model-server selector %v must match its pods %v and not the worker's %v", sel, podLabels, workerLabels)
	}
	// The worker's Deployment, Service and PDB must not take these pods either.
	workerSel, err := metav1.LabelSelectorAsSelector(worker.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	workerPDBSel, err := metav1.LabelSelectorAsSelector(named(m.pdbs, (*policyv1.PodDisruptionBudget).GetName, "dktscore").Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]labels.Selector{
		"worker Deployment": workerSel,
		"worker Service":    labels.SelectorFromSet(named(m.services, (*corev1.Service).GetName, "dktscore").Spec.Selector),
		"worker PDB":        workerPDBSel,
	} {
		if s.Matches(podLabels) {
			t.Errorf("the %s selector %v also matches the model-server pods", what, s)
		}
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
		t.Errorf("replicas %v: want at least 2, so a rollout or drain leaves one serving", dep.Spec.Replicas)
	}

	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != worker.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("image %q, want the worker's %q (one image runs both)", c.Image, worker.Spec.Template.Spec.Containers[0].Image)
	}
	img := parseDockerfile(t, "../Dockerfile.gpu")
	f := parseModelServerArgs(t, "model-server Deployment", img.argv(c.Command, c.Args))

	modelsMount := ""
	for _, vm := range c.VolumeMounts {
		if vm.Name == "models" && vm.ReadOnly {
			modelsMount = vm.MountPath
		}
	}
	for _, v := range pod.Volumes {
		if v.Name == "models" && (v.PersistentVolumeClaim == nil || !v.PersistentVolumeClaim.ReadOnly) {
			t.Errorf("models volume %+v, want a read-only PersistentVolumeClaim", v.VolumeSource)
		}
	}
	checkModelServerFlags(t, "model-server Deployment", f, modelsMount)

	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	checkKnownEnv(t, "model-server Deployment", "model-server", env, knownEnv(t, modelServerEnv()))
	checkGPUEnv(t, "model-server Deployment", env)
	opsPort := portOf(t, "model-server DKTSCORE_HTTP_ADDR", cmp.Or(env["DKTSCORE_HTTP_ADDR"], img.env["DKTSCORE_HTTP_ADDR"]))

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if want := map[string]int32{"grpc": int32(f.port), "http": int32(f.restAPIPort), "ops": int32(opsPort)}; !maps.Equal(ports, want) {
		t.Errorf("container ports %v, want %v (from --port, --rest_api_port and DKTSCORE_HTTP_ADDR)", ports, want)
	}
	// Kubernetes' native gRPC probe (grpc.health.v1) on the gRPC port; its
	// port is a number, never a name.
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.GRPC == nil || p.HTTPGet != nil || p.TCPSocket != nil || p.Exec != nil || p.GRPC.Port != int32(f.port) {
			t.Errorf("%s probe %+v, want grpc: {port: %d}", name, p, f.port)
		}
	}

	gpuLimit := c.Resources.Limits["nvidia.com/gpu"]
	if gpuLimit.Cmp(resource.MustParse("1")) != 0 {
		t.Errorf("nvidia.com/gpu limit %v, want 1 per pod", gpuLimit.String())
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser != 10001 {
		t.Errorf("pod must run as the image's non-root user 10001: %+v", pod.SecurityContext)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container security context %+v, want a read-only root and no privilege escalation", sc)
	}
	ann := dep.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" || ann["prometheus.io/port"] != strconv.Itoa(opsPort) {
		t.Errorf("pod annotations %v, want a /metrics scrape of the ops port %d", ann, opsPort)
	}

	// The Service exposes TF Serving's ports under the same numbers, gRPC
	// marked as such for meshes and L7 load balancers.
	svc := named(m.services, (*corev1.Service).GetName, "dktscore-model-server")
	svcSel := labels.SelectorFromSet(svc.Spec.Selector)
	if !svcSel.Matches(podLabels) || svcSel.Matches(workerLabels) {
		t.Errorf("Service selector %v must match the model-server pods and not the worker's", svcSel)
	}
	svcPorts := map[string]corev1.ServicePort{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = p
	}
	for name, want := range map[string]string{"grpc": "grpc", "http": "http"} {
		p, ok := svcPorts[name]
		if !ok {
			t.Errorf("Service has no %s port: %+v", name, svc.Spec.Ports)
			continue
		}
		target := p.TargetPort.IntVal
		if p.TargetPort.StrVal != "" {
			target = ports[p.TargetPort.StrVal]
		}
		if p.Port != ports[name] || target != ports[name] || p.AppProtocol == nil || *p.AppProtocol != want {
			t.Errorf("Service port %s: port %d target %v appProtocol %v, want port and target %d, appProtocol %s",
				name, p.Port, p.TargetPort.String(), ptrString(p.AppProtocol), ports[name], want)
		}
	}

	pdb := named(m.pdbs, (*policyv1.PodDisruptionBudget).GetName, "dktscore-model-server")
	pdbSel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !pdbSel.Matches(podLabels) || pdbSel.Matches(workerLabels) {
		t.Errorf("PDB selector %v must match the model-server pods and not the worker's (%v)", pdbSel, err)
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Error("PDB sets neither maxUnavailable nor minAvailable")
	}
}

func ptrString(p *string) string {
	if p == nil {
		return "<unset>"
	}
	return *p
}

// The scrape config is Prometheus YAML inside a ConfigMap: its relabel regexes
// must compile (Prometheus uses Go's RE2 too) and it must keep our pods.
func TestPrometheusScrapeConfig(t *testing.T) {
	m := loadManifests(t)
	cm := m.configMaps[0]
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

	// Run the job's relabelling, as Prometheus' pod role would, over every
	// Deployment's pods: one candidate target per declared container port.
	// Each must end up as one target, the ops port of DKTSCORE_HTTP_ADDR at
	// /metrics, labelled with its component (worker or model-server).
	sanitize := regexp.MustCompile(`[^a-zA-Z0-9_]`)
	for _, dep := range m.deployments {
		tmpl := dep.Spec.Template
		c := tmpl.Spec.Containers[0]
		opsPort := ""
		for _, e := range c.Env {
			if e.Name == "DKTSCORE_HTTP_ADDR" {
				opsPort = strconv.Itoa(portOf(t, dep.Name, e.Value))
			}
		}
		targets := map[string]bool{}
		for _, port := range c.Ports {
			lbls := map[string]string{"__address__": "10.1.2.3:" + strconv.Itoa(int(port.ContainerPort)), "__metrics_path__": "/metrics"}
			for k, v := range tmpl.Labels {
				lbls["__meta_kubernetes_pod_label_"+sanitize.ReplaceAllString(k, "_")] = v
			}
			for k, v := range tmpl.Annotations {
				lbls["__meta_kubernetes_pod_annotation_"+sanitize.ReplaceAllString(k, "_")] = v
			}
			kept := true
			for _, rc := range cfg.ScrapeConfigs[0].RelabelConfigs {
				var vals []string
				for _, l := range rc.SourceLabels {
					vals = append(vals, lbls[l])
				}
				regex, replacement := cmp.Or(rc.Regex, "(.*)"), cmp.Or(rc.Replacement, "$1")
				re := regexp.MustCompile("^(?:" + regex + ")$")
				val := strings.Join(vals, ";")
				switch cmp.Or(rc.Action, "replace") {
				case "keep":
					kept = kept && re.MatchString(val)
				case "replace":
					if re.MatchString(val) {
						lbls[rc.TargetLabel] = re.ReplaceAllString(val, replacement)
					}
				default:
					t.Fatalf("relabel action %q not simulated here", rc.Action)
				}
			}
			if kept {
				targets[lbls["__address__"]+lbls["__metrics_path__"]+" component="+lbls["component"]] = true
			}
		}
		if want := "10.1.2.3:" + opsPort + "/metrics component=" + tmpl.Labels["app.kubernetes.io/component"]; len(targets) != 1 || !targets[want] {
			t.Errorf("Deployment %s: the scrape job finds targets %v, want only %s", dep.Name, targets, want)
		}
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

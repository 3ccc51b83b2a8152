// The gRPC shape of each endpoint's answer (GRPC.md §5): the HTTP view's JSON body, renamed and
// rewrapped into the message of the mirroring service. One view, two transports — the data
// comes from the same render (agent/api/endpoints/*) the HTTP API serves, so both always agree.
//
// Each function takes the parsed 200 body and returns a plain object for proto-loader's
// serializer (field names as in lainlet.proto). Defensive about shape: a view that ever yields
// `null` where a list or object is expected gives an empty one here, never an exception.

type Json = unknown;
type Obj = Record<string, Json>;
export type Message = Record<string, unknown>;

function obj(v: Json): Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {};
}

function arr(v: Json): Json[] {
  return Array.isArray(v) ? v : [];
}

function str(v: Json): string {
  return typeof v === 'string' ? v : '';
}

function num(v: Json): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

function strings(v: Json): string[] {
  return arr(v).map(str);
}

/** The object's entries with each value converted; `null` values (placeholders) are skipped. */
function mapValues(v: Json, f: (value: Json) => Message): Record<string, Message> {
  const out: Record<string, Message> = {};
  for (const [k, value] of Object.entries(obj(v))) if (value !== null) out[k] = f(value);
  return out;
}

/**
 * A message without its default-valued fields: proto3 leaves them off the wire (GRPC.md §7),
 * and the serializer writes whatever field is set. Only for messages: a map keeps its "" values.
 * An empty object field is an empty map (lainlet.proto has no singular message fields).
 */
function msg(fields: Message): Message {
  for (const [k, v] of Object.entries(fields)) {
    const empty = Array.isArray(v) ? v.length === 0 : v !== null && typeof v === 'object' && Object.keys(v).length === 0;
    if (v === '' || v === 0 || v === false || empty) delete fields[k];
  }
  return fields;
}

const data = (v: Json): Message => msg({ Data: v });

/** Services by the HTTP path of the endpoint whose answer they carry. */
export const SHAPES: Record<string, (body: Json) => Message> = {
  '/appname': (b) => data({ appname: str(obj(b).appname) }),
  '/v2/appswatcher': (b) => data(mapValues(b, (a) => msg({ Appname: str(obj(a).Appname) }))),
  '/v2/backupspec': (b) => data(mapValues(b, (pods) => msg({
    pods: arr(pods).map((p) => {
      const pod = obj(p);
      return msg({
        Annotation: str(pod.Annotation),
        Containers: arr(pod.Containers).map((c) => {
          const x = obj(c);
          return msg({ Id: str(x.Id), Ip: str(x.Ip), NodeIp: str(x.NodeIp), NodeName: str(x.NodeName) });
        }),
        InstanceNo: num(pod.InstanceNo),
      });
    }),
  }))),
  '/v2/configwatcher': (b) => {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(obj(b))) out[k] = str(v);
    return data(out);
  },
  '/v2/containers': (b) => data(mapValues(b, (i) => {
    const x = obj(i);
    return msg({
      AppName: str(x.app), AppVersion: str(x.app_version), ProcName: str(x.proc), NodeName: str(x.nodename),
      NodeIP: str(x.nodeip), IP: str(x.ip), Port: num(x.port), InstanceNo: num(x.instanceNo),
    });
  })),
  '/v2/coreinfowatcher': (b) => data(mapValues(b, (info) => msg({
    PodInfos: arr(obj(info).PodInfos).map((p) => {
      const pod = obj(p);
      return msg({
        Annotation: str(pod.Annotation),
        Containers: arr(pod.ContainerInfos).map((c) => {
          const x = obj(c);
          return msg({
            Command: strings(x.Command), Id: str(x.ContainerId), Ip: str(x.ContainerIp), Cpu: num(x.Cpu), Env: strings(x.Env),
            Expose: num(x.Expose), Image: str(x.Image), Memory: num(x.Memory), NodeIp: str(x.NodeIp), NodeName: str(x.NodeName),
            Volumes: strings(x.Volumes),
          });
        }),
        Dependencies: arr(pod.Dependencies).map((d) => msg({ PodName: str(obj(d).PodName), Policy: num(obj(d).Policy) })),
        InstanceNo: num(pod.InstanceNo),
      });
    }),
  }))),
  '/v2/depends': (b) => data(mapValues(b, (nodes) => msg({
    nodes: mapValues(nodes, (apps) => msg({
      apps: mapValues(apps, (item) => msg({
        Annotation: str(obj(item).Annotation),
        Containers: arr(obj(item).Containers).map((c) => {
          const x = obj(c);
          return msg({ ContainerID: str(x.ContainerID), NodeIP: str(x.NodeIP), IP: str(x.IP), Port: num(x.Port) });
        }),
      })),
    })),
  }))),
  '/v2/localspecquery': (b) => data(strings(b)),
  // A string field is a STRING value; anything else (number, bool, object, null) is an empty
  // Value, which decoders read as the original's key-only entry (GRPC.md §5.9, §7).
  '/v2/nodes': (b) => {
    const out: Record<string, Message> = {};
    for (const [k, node] of Object.entries(obj(b))) {
      const v: Record<string, Message> = {};
      for (const [field, value] of Object.entries(obj(node))) v[field] = typeof value === 'string' ? msg({ sval: value }) : {};
      out[k] = msg({ v });
    }
    return data(out);
  },
  '/v2/procwatcher': (b) => data(arr(b).map((g) => msg({
    Pods: arr(obj(g).proc).map((p) => {
      const x = obj(p);
      return msg({ InstanceNo: num(x.InstanceNo), IP: str(x.IP), Port: num(x.Port), ProcName: str(x.ProcName) });
    }),
  }))),
  '/v2/proxywatcher': (b) => data(mapValues(b, (info) => msg({
    Containers: arr(obj(info).containers).map((c) => msg({ ContainerIp: str(obj(c).container_ip), ContainerPort: num(obj(c).container_port) })),
  }))),
  '/v2/rebellion/localprocs': (b) => data(mapValues(b, (info) => msg({
    PodInfos: arr(obj(info).PodInfos).map((p) => {
      const x = obj(p);
      return msg({ Annotation: str(x.Annotation), AppVersion: str(x.AppVersion), InstanceNo: num(x.InstanceNo) });
    }),
  }))),
  '/v2/streamrouter/ports': (b) => data(arr(b).map(num)),
  '/v2/streamrouter/streamprocs': (b) => data(mapValues(b, (procs) => msg({
    procs: arr(procs).map((p) => {
      const x = obj(p);
      return msg({
        Name: str(x.Name),
        Upstreams: arr(x.Upstreams).map((u) => msg({ Host: str(obj(u).Host), InstanceNo: num(obj(u).InstanceNo) })),
        Services: arr(x.Services).map((s) => {
          const y = obj(s);
          return msg({ UpstreamPort: num(y.UpstreamPort), ListenPort: num(y.ListenPort), Send: str(y.Send), Expect: str(y.Expect) });
        }),
      });
    }),
  }))),
  '/v2/webrouter/webprocs': (b) => data(mapValues(b, (info) => msg({
    PodInfos: arr(obj(info).PodInfos).map((p) => {
      const x = obj(p);
      return msg({
        Annotation: str(x.Annotation),
        Containers: arr(x.ContainerInfos).map((c) => msg({ IP: str(obj(c).ContainerIp), Expose: num(obj(c).Expose) })),
      });
    }),
  }))),
};

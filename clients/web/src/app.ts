// The page of the browser test (clients/web/run.sh): courier's UserService over gRPC-Web, from a client generated
// from proto/ (protoc-gen-es v2 into ../gen, at test time) and @connectrpc/connect-web's gRPC-Web transport, the
// way a web app calls courier. The test drives it through `window.courier` and reads what it returns.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { UserService, UserStatus } from "../gen/courier/users/v1/users_pb";

/** What a page's calls gave, in plain values (Playwright hands them to the test). */
export interface Flow {
  created: { id: string; name: string; email: string; status: string };
  fetched: { id: string; name: string; email: string };
  /** The users ListUsers streamed, in order. */
  listed: { id: string; email: string }[];
  /** GetUser of an id nobody has: the gRPC status a page reads from the answer. */
  missing: { code: string; message: string };
}

/** A failed call as a page sees it. */
export interface Failure {
  code: string;
  message: string;
}

/** A UserService client on courier at `baseUrl` that sends the bearer token `token`. */
function users(baseUrl: string, token: string) {
  const bearer: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  // Binary gRPC-Web (application/grpc-web+proto), the transport's default.
  const transport = createGrpcWebTransport({ baseUrl, interceptors: [bearer] });
  return createClient(UserService, transport);
}

function failure(error: unknown): Failure {
  const connect = ConnectError.from(error);
  return { code: Code[connect.code], message: connect.rawMessage };
}

/** CreateUser (Ada with `email`, Grace with `grace.<email>`), GetUser of Ada, ListUsers (a server stream) and
 * GetUser of an unknown id. */
async function flow(baseUrl: string, token: string, email: string): Promise<Flow> {
  const client = users(baseUrl, token);
  const { user } = await client.createUser({ name: "Ada Lovelace", email });
  if (!user) throw new Error("CreateUser answered no user");
  await client.createUser({ name: "Grace Hopper", email: `grace.${email}` });
  const got = await client.getUser({ id: user.id }, { timeoutMs: 5000 });
  const listed: Flow["listed"] = [];
  for await (const message of client.listUsers({})) {
    if (message.user) listed.push({ id: message.user.id, email: message.user.email });
  }
  let missing: Failure = { code: "none", message: "GetUser of an unknown id succeeded" };
  try {
    await client.getUser({ id: "usr_0190f5a0c2b87cc3a1b2c3d4e5f60718" });
  } catch (error) {
    missing = failure(error);
  }
  return {
    created: { id: user.id, name: user.name, email: user.email, status: UserStatus[user.status] },
    fetched: { id: got.user?.id ?? "", name: got.user?.name ?? "", email: got.user?.email ?? "" },
    listed,
    missing,
  };
}

/** One CreateUser; its failure, if it fails (what a page on an origin courier does not allow gets). */
async function attempt(baseUrl: string, token: string, email: string): Promise<Failure | null> {
  try {
    await users(baseUrl, token).createUser({ name: "Eve", email });
    return null;
  } catch (error) {
    return failure(error);
  }
}

declare global {
  interface Window {
    courier: { flow: typeof flow; attempt: typeof attempt };
  }
}

window.courier = { flow, attempt };

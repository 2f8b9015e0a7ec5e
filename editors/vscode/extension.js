// VS Code client for the `.mca` language server: starts `mca lsp` over stdio.
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function createClient() {
  const config = vscode.workspace.getConfiguration('mca');
  const command = config.get('server.path', 'mca');
  const args = ['lsp', ...config.get('server.extraArgs', [])];
  const serverOptions = {
    run: { command, args, transport: TransportKind.stdio },
    debug: { command, args, transport: TransportKind.stdio },
  };
  const clientOptions = {
    documentSelector: [
      { scheme: 'file', language: 'mca' },
      { scheme: 'untitled', language: 'mca' },
    ],
    synchronize: {
      // The server also registers its own watcher; this covers clients without dynamic registration.
      fileEvents: vscode.workspace.createFileSystemWatcher('**/*.mca'),
    },
    outputChannelName: 'MCA',
  };
  return new LanguageClient('mca', 'MCA', serverOptions, clientOptions);
}

async function start() {
  client = createClient();
  try {
    await client.start();
  } catch (err) {
    const path = vscode.workspace.getConfiguration('mca').get('server.path', 'mca');
    vscode.window.showErrorMessage(
      `Could not start the MCA language server (\`${path} lsp\`): ${err}. ` +
        'Install `mca` or set `mca.server.path`.'
    );
  }
}

async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('mca.restartServer', async () => {
      if (client) {
        await client.stop().catch(() => {});
      }
      await start();
    }),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration('mca.server')) {
        await vscode.commands.executeCommand('mca.restartServer');
      }
    })
  );
  await start();
}

async function deactivate() {
  if (client) {
    await client.stop();
  }
}

module.exports = { activate, deactivate };

import { App } from 'aws-cdk-lib';
import { defineApp } from './define-app';

const app = new App();
defineApp(app);
app.synth();
